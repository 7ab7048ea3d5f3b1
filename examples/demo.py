"""The demo behind `scripts/demo`: real sshd hosts on 127.0.0.1, real `fab` commands.

Starts two demo hosts (ports 2201 and 2202), then deploys the example app, deploys
a change, lists the releases and rolls back, showing each host's page each time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from atomicdeploy.testing import LocalHosts

REPO = Path(__file__).resolve().parents[1]
BASE = Path("/tmp/atomicdeploy-demo")
BUILD = BASE / "build"


def fab(*args: str) -> None:
    print(f"\n$ fab {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "fabric", *args], cwd=REPO,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"demo: `fab {' '.join(args)}` exited {proc.returncode}")


def show_pages(deploy_paths: dict[str, Path]) -> None:
    for name, path in deploy_paths.items():
        current = path / "current"
        target = os.readlink(current) if current.is_symlink() else "(none)"
        page = render(current / "public" / "index.php")
        print(f"  {name}: current -> {target} | page: {page}")


def render(index: Path) -> str:
    php = shutil.which("php")
    if not php:
        return "(php-cli not installed)"
    proc = subprocess.run([php, str(index)], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    return (proc.stdout or proc.stderr).strip().splitlines()[-1]


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
    try:
        hosts.start()
    except RuntimeError as exc:
        raise SystemExit(f"demo: {exc} (is something else using ports {ports}?)") from None
    try:
        fab("--list")
        fab("demo", "deploy", "--source", str(BUILD))
        show_pages(deploy_paths)

        set_version(BUILD, "2")
        print("\nchanged the app to version 2 (both src/Email.php and src/Notification.php)")
        fab("demo", "deploy", "--source", str(BUILD))
        show_pages(deploy_paths)

        fab("demo", "releases")
        fab("demo", "rollback")
        show_pages(deploy_paths)
        print(f"\nthe hosts' files are under {BASE}/srv; shared/ kept .env and storage/ across"
              " releases")  # fmt: skip
    finally:
        if args.keep_running:
            print(f"demo hosts still running (pids {', '.join(str(h.pid) for h in hosts)});"
                  f" stop them with: kill {' '.join(str(h.pid) for h in hosts)}")  # fmt: skip
        else:
            hosts.stop()
            print("demo hosts stopped")


if __name__ == "__main__":
    main()
