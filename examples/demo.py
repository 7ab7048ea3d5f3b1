"""The demo behind `scripts/demo`: real sshd, nginx and php-fpm on 127.0.0.1, real `fab`.

Starts two demo hosts (sshd on ports 2201 and 2202, each with nginx + php-fpm serving
http://127.0.0.1:8081 and :8082), then deploys the example app, deploys a change while
clients keep requesting the page, lists the releases and rolls back under load too,
showing each host's page and what the clients saw.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the web kit is tests/kit, not part of the package

from atomicdeploy.testing import LocalHosts  # noqa: E402
from tests.kit.load import Load, judge  # noqa: E402
from tests.kit.web import WebHosts  # noqa: E402

BASE = Path("/tmp/atomicdeploy-demo")
BUILD = BASE / "build"
HTTP_PORTS = {"demo1": 8081, "demo2": 8082}


def fab(*args: str, load_urls: list[str] | None = None) -> None:
    print(f"\n$ fab {' '.join(args)}", flush=True)
    loads = [Load(url, clients=2, max_seconds=120).start() for url in load_urls or []]
    proc = subprocess.run([sys.executable, "-m", "fabric", *args], cwd=REPO,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    returned = time.monotonic()
    if loads:
        time.sleep(0.5)
        samples = [s for load in loads for s in load.stop()]
        seen = sorted({s.version or "?" for s in samples})
        after = {s.version or "?" for s in samples if s.start > returned}
        v = judge(samples)
        print(f"  clients during that command: {v.requests} requests, {v.failed} failed,"
              f" {v.mixed} mixed versions; versions seen: {', '.join(seen)};"
              f" after it returned: {', '.join(sorted(after))}")  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"demo: `fab {' '.join(args)}` exited {proc.returncode}")


def show_pages(deploy_paths: dict[str, Path]) -> None:
    for name, path in deploy_paths.items():
        current = path / "current"
        target = os.readlink(current) if current.is_symlink() else "(none)"
        url = f"http://127.0.0.1:{HTTP_PORTS[name]}/"
        try:
            page = urllib.request.urlopen(url, timeout=5).read().decode().strip()
        except OSError as exc:
            page = f"({exc})"
        print(f"  {name}: current -> {target} | {url} says: {page}")


def set_version(app: Path, version: str) -> None:
    for name in ("Email.php", "Notification.php"):
        f = app / "src" / name
        f.write_text(re.sub(r"const VERSION = '[^']*';", f"const VERSION = '{version}';",
                            f.read_text()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the demo hosts running, to try fab yourself")  # fmt: skip
    args = parser.parse_args()

    inventory = yaml.safe_load((REPO / "inventory.yml").read_text())
    hosts_cfg = {n: h for n, h in inventory["hosts"].items() if h["labels"]["stage"] == "demo"}
    ports = [h["port"] for h in hosts_cfg.values()]
    deploy_paths = {n: Path(f"/tmp/atomicdeploy-demo/srv/{n}") for n in hosts_cfg}

    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    shutil.copytree(REPO / "examples" / "app", BUILD)
    hosts = LocalHosts(BASE, len(ports), prefix="demo", ports=ports)
    print(f"starting {len(hosts)} demo hosts: sshd on 127.0.0.1, ports"
          f" {', '.join(map(str, ports))}")  # fmt: skip
    webs = WebHosts(BASE / "web", list(deploy_paths.values()), names=list(deploy_paths),
                    ports=[HTTP_PORTS[n] for n in deploy_paths])  # fmt: skip
    print(f"and nginx + php-fpm (opcache on) serving them on ports"
          f" {', '.join(str(p) for p in HTTP_PORTS.values())}")  # fmt: skip
    try:
        hosts.start()
        webs.start()
    except RuntimeError as exc:
        hosts.stop()
        raise SystemExit(f"demo: {exc} (is something else using ports {ports}"
                         f" or {list(HTTP_PORTS.values())}?)") from None  # fmt: skip
    urls = [w.url("/") for w in webs]
    try:
        fab("--list")
        fab("demo", "deploy", "--source", str(BUILD))
        show_pages(deploy_paths)

        set_version(BUILD, "2")
        print("\nchanged the app to version 2 (both src/Email.php and src/Notification.php);"
              " now deploying it while clients keep requesting the page")  # fmt: skip
        fab("demo", "deploy", "--source", str(BUILD), load_urls=urls)
        show_pages(deploy_paths)

        fab("demo", "releases")
        fab("demo", "rollback", load_urls=urls)
        show_pages(deploy_paths)
        print(f"\nthe hosts' files are under {BASE}/srv; shared/ kept .env and storage/ across"
              " releases")  # fmt: skip
    finally:
        if args.keep_running:
            pids = [h.pid for h in hosts] + [p for w in webs for p in w.pids]
            print(f"demo hosts still running; stop them with: kill {' '.join(map(str, pids))}")
        else:
            webs.stop()
            hosts.stop()
            print("demo hosts stopped")


if __name__ == "__main__":
    main()
