"""Benchmark: what a deploy does to traffic, for atomicdeploy and two baselines.

Starts one sshd host and, per method, its own nginx + php-fpm (opcache on,
validate_timestamps=0) on 127.0.0.1; drives continuous keep-alive load and in one
run performs:
  - atomicdeploy: N deploys and N/2 rollbacks (nginx include + reload + wait, opcache reset);
  - baseline "rsync over live": rsync each version over the served directory;
  - baseline "symlink swap": `current` swapped atomically, nginx root current/public,
    no opcache reset (what most tutorials stop at).
Prints, per method: requests, rps, non-2xx, mixed, stale-after-return, deploy seconds.
A request is "stale after return" if it started after a deploy returned (and before
the next one started) and shows another version than the one just deployed.
Not a test: it prints figures. Usage: python bench/zero_downtime.py [--deploys 10]
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atomicdeploy import inventory, pipeline  # noqa: E402
from atomicdeploy.report import Reporter  # noqa: E402
from atomicdeploy.testing import LocalHosts, write_inventory  # noqa: E402
from tests.kit.load import Load, Sample, judge  # noqa: E402
from tests.kit.web import WebHost  # noqa: E402


def set_version(app: Path, version: str) -> None:
    for name in ("Email.php", "Notification.php"):
        f = app / "src" / name
        f.write_text(
            re.sub(r"const VERSION = '[^']*';", f"const VERSION = '{version}';", f.read_text())
        )


def score(samples: list[Sample], events: list[tuple[float, float, str]]) -> dict:
    """events: (started, returned, version now expected), in order."""
    stale = 0
    for i, (_, returned, version) in enumerate(events):
        until = events[i + 1][0] if i + 1 < len(events) else float("inf")
        stale += sum(1 for s in samples if returned < s.start < until and s.version != version)
    v = judge(samples)
    return {
        "requests": v.requests,
        "rps": v.rps,
        "non-2xx": v.failed,
        "mixed": v.mixed,
        "stale-after-return": stale,
        "retried": v.retried,
        "deploy s": sum(r - s for s, r, _ in events) / max(1, len(events)),
    }


def run_atomicdeploy(base: Path, host, app: Path, deploys: int, clients: int, strategy: str):
    deploy_path = base / "srv" / "atomic"
    web = WebHost(
        name="atomic",
        base=base / "web-atomic",
        deploy_path=deploy_path,
        port=_free_port(),
        mode="include",
    ).start()
    try:
        inv_path = write_inventory(
            base / "inventory-atomic.yml",
            [host],
            stage="bench",
            known_hosts=base / "known_hosts",
            source=str(app),
            keep_releases=deploys + 2,
        )
        text = inv_path.read_text().replace(
            f"deploy_path: {host.deploy_path}", f"deploy_path: {deploy_path}"
        )
        import yaml

        data = yaml.safe_load(text)
        data["config"]["nginx"] = {
            "test": web.nginx_test_command(),
            "reload": web.nginx_reload_command(),
            "pid_file": str(web.nginx_pid_file),
            "reload_timeout": 30,
        }
        data["config"]["opcache"] = {"strategy": strategy, "socket": str(web.fpm_socket)}
        inv_path.write_text(yaml.safe_dump(data))
        hosts = inventory.load(inv_path).stage("bench")
        quiet = Reporter(io.StringIO(), io.StringIO())

        def deploy(version: str) -> None:
            set_version(app, version)
            pipeline.deploy(hosts, pipeline.Options(stage="bench"), quiet, source=str(app))

        def rollback() -> None:
            pipeline.rollback(hosts, pipeline.Options(stage="bench"), quiet)

        deploy("0")
        return _drive(
            web,
            clients,
            [(lambda v=str(i): deploy(v), str(i)) for i in range(1, deploys + 1)]
            + [(rollback, str(deploys - i)) for i in range(1, deploys // 2 + 1)],
        )
    finally:
        web.stop()


def run_rsync_over_live(base: Path, app: Path, deploys: int, clients: int):
    deploy_path = base / "srv" / "rsync"
    live = deploy_path / "current"
    live.mkdir(parents=True)
    web = WebHost(
        name="rsync",
        base=base / "web-rsync",
        deploy_path=deploy_path,
        port=_free_port(),
        mode="current",
    ).start()
    try:

        def deploy(version: str) -> None:
            set_version(app, version)
            subprocess.run(["rsync", "-a", "--delete", f"{app}/", f"{live}/"], check=True)

        deploy("0")
        return _drive(
            web, clients, [(lambda v=str(i): deploy(v), str(i)) for i in range(1, deploys + 1)]
        )
    finally:
        web.stop()


def run_symlink_swap(base: Path, app: Path, deploys: int, clients: int):
    deploy_path = base / "srv" / "swap"
    (deploy_path / "releases").mkdir(parents=True)
    web = WebHost(
        name="swap",
        base=base / "web-swap",
        deploy_path=deploy_path,
        port=_free_port(),
        mode="current",
    ).start()
    try:

        def deploy(version: str) -> None:
            set_version(app, version)
            rel = deploy_path / "releases" / version
            shutil.copytree(app, rel)
            tmp = deploy_path / ".current.tmp"
            subprocess.run(["ln", "-sfn", f"releases/{version}", str(tmp)], check=True)
            subprocess.run(["mv", "-fT", str(tmp), str(deploy_path / "current")], check=True)

        deploy("0")
        return _drive(
            web, clients, [(lambda v=str(i): deploy(v), str(i)) for i in range(1, deploys + 1)]
        )
    finally:
        web.stop()


def _drive(web, clients: int, actions) -> dict:
    load = Load(web.url("/"), clients=clients, max_seconds=600).start()
    events = []
    try:
        time.sleep(1.0)
        for action, version in actions:
            started = time.monotonic()
            action()
            events.append((started, time.monotonic(), version))
            time.sleep(0.5)
    finally:
        samples = load.stop()
    return score(samples, events)


def _free_port() -> int:
    from atomicdeploy.testing.hosts import free_port

    return free_port()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--deploys", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--strategies",
        default="fcgi,none",
        help="opcache strategies to run atomicdeploy with (comma-separated)",
    )
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="atomicdeploy-bench-"))
    app = base / "app"
    shutil.copytree(REPO / "examples" / "app", app)
    rows = []
    with LocalHosts(base / "sshd", 1, prefix="bench") as hosts:
        for strategy in args.strategies.split(","):
            r = run_atomicdeploy(base, hosts[0], app, args.deploys, args.clients, strategy)
            rows.append(
                (
                    f"atomicdeploy (opcache {strategy}), {args.deploys} deploys"
                    f" + {args.deploys // 2} rollbacks",
                    r,
                )
            )
        rows.append(
            (
                f"baseline: rsync over the live tree, {args.deploys} deploys",
                run_rsync_over_live(base, app, args.deploys, args.clients),
            )
        )
        rows.append(
            (
                f"baseline: symlink swap, root current/public, no reset, {args.deploys} deploys",
                run_symlink_swap(base, app, args.deploys, args.clients),
            )
        )
    cols = ["requests", "rps", "non-2xx", "mixed", "stale-after-return", "retried", "deploy s"]
    print(f"| method | {' | '.join(cols)} |")
    print("|---|" + "---|" * len(cols))
    for name, r in rows:
        cells = [
            f"{r[c]:.0f}" if c == "rps" else f"{r[c]:.2f}" if c == "deploy s" else str(r[c])
            for c in cols
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
