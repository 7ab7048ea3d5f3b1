"""Benchmark: deploys to 1, 10 and 30 loopback sshd hosts, parallel and one at a time.

For each fleet size, in one run: a first deploy of a 2,000-file app, an incremental
deploy (one file changed), a rollback, and the switch skew (first to last host's
switch, from the hosts' clocks); then the same with `parallel=1` as the baseline.
For the incremental deploy it also splits the machine's CPU time between the controller
(this process, its rsync and ssh clients) and the fake hosts (sshd, shells, rsync
receivers), which on a real fleet run on machines of their own.
The SSH floor, measured in the same run on the same hosts with the same concurrency:
a fresh login and as many no-op commands as the incremental deploy ran on each host.
No deploy can be faster than it; when its 30-host time is already over 3x the one-host
deploy, the fake hosts' CPU (all on this machine) bounds the ratio, not the deploy.
Prints a table. Not a test: it prints figures.
Usage: python bench/fleet.py [--sizes 1,10,30] [--files 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fabric import Config as FabricConfig  # noqa: E402

from atomicdeploy import inventory, pipeline, remote  # noqa: E402
from atomicdeploy.report import Reporter  # noqa: E402
from atomicdeploy.testing import LocalHosts, write_inventory  # noqa: E402
from bench.handtuned import Script  # noqa: E402

COUNTS = ("files sent", "commands per host")  # printed as whole numbers


def make_app(app: Path, files: int) -> None:
    (app / "public").mkdir(parents=True)
    (app / "public" / "index.php").write_text("<?php echo 'version 1';\n")
    for i in range(files - 1):
        f = app / "src" / f"d{i // 100}" / f"f{i}.php"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"<?php // file {i}\n" + "x" * 200 + "\n")


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all processes, all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def controller_cpu() -> float:
    """CPU seconds of this process and of its finished children (rsync, ssh clients).

    The fake hosts' sshd daemons are children too, but they are reaped only when the
    hosts stop, so during a run this counts the controller side alone.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def counting_commands() -> Iterator[list[str]]:
    """Count the remote commands and rsync channels started, by host name (bench only)."""
    seen: list[str] = []
    run, rsync = remote.Remote.run, remote.Remote.rsync

    def counted(method):  # type: ignore[no-untyped-def]
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(self.name)
            return method(self, *args, **kwargs)

        return call

    remote.Remote.run, remote.Remote.rsync = counted(run), counted(rsync)  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        remote.Remote.run, remote.Remote.rsync = run, rsync  # type: ignore[method-assign]


def ssh_floor(stage, commands: int, parallel: int) -> float:
    """Seconds for a fresh login plus `commands` no-op commands on every host of `stage`."""
    known = remote.KnownHosts()

    def one(host) -> None:  # type: ignore[no-untyped-def]
        conn = remote.connect(host, FabricConfig(), known)
        conn.open()
        for _ in range(commands):
            conn.run("true", hide=True, in_stream=False)
        conn.close()

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(parallel, len(stage))) as pool:
        list(pool.map(one, stage))
    return time.monotonic() - start


def run(base: Path, hosts, app: Path, parallel: int | None, hardlinks: bool) -> dict[str, float]:
    tag = f"p{parallel or 'default'}-{'links' if hardlinks else 'copy'}"
    srv = base / "srv" / tag
    inv = write_inventory(
        base / f"inventory-{len(hosts)}-{tag}.yml",
        hosts,
        stage="bench",
        known_hosts=base / "known_hosts",
        source=str(app),
        upload_hardlinks=hardlinks,
    )
    text = inv.read_text()
    for h in hosts:
        text = text.replace(f"deploy_path: {h.deploy_path}", f"deploy_path: {srv / h.name}")
    inv.write_text(text)
    stage = inventory.load(inv).stage("bench")
    quiet = Reporter(io.StringIO(), io.StringIO())
    opts = pipeline.Options(stage="bench", parallel=parallel)

    def timed(fn):
        start = time.monotonic()
        out = fn()
        return time.monotonic() - start, out

    first, _ = timed(lambda: pipeline.deploy(stage, opts, quiet, source=str(app)))
    (app / "public" / "index.php").write_text(f"<?php echo 'version {time.time()}';\n")
    busy, ctl = machine_busy(), controller_cpu()
    with counting_commands() as seen:
        incr, out = timed(lambda: pipeline.deploy(stage, opts, quiet, source=str(app)))
    busy, ctl = machine_busy() - busy, controller_cpu() - ctl
    per_host = max(seen.count(h.name) for h in hosts)
    floor = ssh_floor(list(stage), per_host, parallel or min(h.parallel for h in stage))
    sent = max(getattr(s, "files_transferred", 0) for s in out.uploads.values())
    back, rb = timed(lambda: pipeline.rollback(stage, opts, quiet))
    return {
        "first deploy s": first,
        "incremental s": incr,
        "files sent": sent,
        "incr. CPU s controller": ctl,
        "incr. CPU s hosts": max(0.0, busy - ctl),
        "SSH floor s": floor,
        "commands per host": per_host,
        "rollback s": back,
        "deploy skew ms": (out.skew or 0) * 1000,
        "rollback skew ms": (rb.skew or 0) * 1000,
    }


def baseline(base: Path, hosts, app: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The hand-tuned script (bench/handtuned.py) on the same hosts and app. Each run of it
    logs in anew (its masters opened, then closed), as a `fab` run does."""
    script = Script(hosts, base / "script" / str(len(hosts)), base / "known_hosts_script")

    def timed(op) -> float:  # type: ignore[no-untyped-def]
        start = time.monotonic()
        script.open()
        try:
            op()
        finally:
            script.close()
        return time.monotonic() - start

    first = timed(lambda: script.deploy(app, "r1"))
    (app / "public" / "index.php").write_text(f"<?php echo 'version {time.time()}';\n")
    ctl = controller_cpu()
    incr = timed(lambda: script.deploy(app, "r2"))
    ctl = controller_cpu() - ctl
    back = timed(script.rollback)
    return {"first": first, "incremental": incr, "rollback": back, "ctl": ctl}


def print_ratios(rows, scripts: dict[int, dict[str, float]]) -> None:  # type: ignore[no-untyped-def]
    """atomicdeploy (parallel default, copy) against the hand-tuned script, per size."""
    print()
    print(
        "| hosts | second deploy s: atomicdeploy / script / ratio"
        " | rollback s: atomicdeploy / script / ratio"
        " | controller CPU s per host: atomicdeploy / script |"
    )
    print("|---|---|---|---|")
    for label, r in rows:
        n = int(label.split()[0])
        if "parallel=default" not in label or "copy" not in label or n not in scripts:
            continue
        s = scripts[n]
        print(
            f"| {n} | {r['incremental s']:.2f} / {s['incremental']:.2f} /"
            f" {r['incremental s'] / s['incremental']:.2f}"
            f" | {r['rollback s']:.2f} / {s['rollback']:.2f}"
            f" / {r['rollback s'] / s['rollback']:.2f}"
            f" | {r['incr. CPU s controller'] / n:.3f} / {s['ctl'] / n:.3f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1,10,30")
    ap.add_argument("--files", type=int, default=2000)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="atomicdeploy-fleet-"))
    app = base / "app"
    make_app(app, args.files)
    rows = []
    scripts: dict[int, dict[str, float]] = {}
    with LocalHosts(base / "sshd", max(sizes), prefix="n") as all_hosts:
        for n in sizes:
            hosts = list(all_hosts)[:n]
            scripts[n] = baseline(base, hosts, app)
            for parallel, hardlinks in ((None, False), (None, True), (1, False)):
                if n == 1 and parallel == 1:
                    continue
                label = (
                    f"{n} host(s), parallel={'default' if parallel is None else parallel},"
                    f" {'upload_hardlinks' if hardlinks else 'copy (default)'}"
                )
                rows.append((label, run(base, hosts, app, parallel, hardlinks)))
    cols = [
        "first deploy s",
        "incremental s",
        "files sent",
        "incr. CPU s controller",
        "incr. CPU s hosts",
        "SSH floor s",
        "commands per host",
        "rollback s",
        "deploy skew ms",
        "rollback skew ms",
    ]
    print(f"| hosts | {' | '.join(cols)} |")
    print("|---|" + "---|" * len(cols))
    for label, r in rows:
        cells = [f"{r[c]:.0f}" if c.endswith("ms") or c in COUNTS else f"{r[c]:.2f}" for c in cols]
        print(f"| {label} | {' | '.join(cells)} |")
    one = {label.split(", ", 2)[2]: r for label, r in rows if label.startswith("1 host")}
    for label, r in rows:
        mode = label.split(", ", 2)[2]
        if "parallel=default" in label and not label.startswith("1 host") and mode in one:
            ratio = r["incremental s"] / one[mode]["incremental s"]
            floor = r["SSH floor s"] / one[mode]["incremental s"]
            ctl = r["incr. CPU s controller"]
            busy = ctl + r["incr. CPU s hosts"]
            print(
                f"{label}: incremental {ratio:.1f}x one host (SSH floor alone {floor:.1f}x);"
                f" controller CPU"
                f" {ctl / int(label.split()[0]):.3f} s per host; machine busy {busy:.1f} CPU s"
                f" in {r['incremental s']:.1f} s on {os.cpu_count()} cores"
            )
    print_ratios(rows, scripts)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
