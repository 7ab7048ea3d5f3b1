"""Benchmark: deploys to 1, 10, 30 (and 100) loopback sshd hosts, against a hand-tuned script.

For each fleet size, in one run: a first deploy of a 2,000-file app, then rounds of an
incremental deploy (one file changed) and a rollback, alternating with the same on the
hand-tuned OpenSSH script (bench/handtuned.py) on the same hosts; the figures are the
medians of the rounds, and the ratio atomicdeploy / script is printed per size. Also the
switch skew (first to last host's switch, from the hosts' clocks), and one round each with
`upload_hardlinks` and with `parallel=1` (below 100 hosts).
For the incremental deploy it also splits the machine's CPU time between the controller
(this process, its rsync and ssh clients) and the fake hosts (sshd, shells, rsync
receivers), which on a real fleet run on machines of their own.
The SSH floor, measured in the same run on the same hosts with the same concurrency:
a fresh login and as many no-op commands as the incremental deploy ran on each host.
Prints tables. Not a test: it prints figures.
Usage: python bench/fleet.py [--sizes 1,10,30,100] [--files 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import statistics
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
    shared = remote.Shared()

    def one(host) -> None:  # type: ignore[no-untyped-def]
        conn = remote.connect(host, FabricConfig(), shared)
        conn.open()
        for _ in range(commands):
            conn.run("true", hide=True, in_stream=False)
        conn.close()

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(parallel, len(stage))) as pool:
        list(pool.map(one, stage))
    return time.monotonic() - start


def stage_for(base: Path, hosts, app: Path, parallel: int | None, hardlinks: bool):  # type: ignore[no-untyped-def]
    """An inventory for `hosts` with its own deploy paths per mode, loaded."""
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
    return inventory.load(inv).stage("bench")


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.monotonic()
    out = fn()
    return time.monotonic() - start, out


def touch(app: Path) -> None:
    """One file changed: the next deploy sends it alone."""
    (app / "public" / "index.php").write_text(f"<?php echo 'version {time.time()}';\n")


class Ours:
    """atomicdeploy on one stage: a first deploy, then rounds of an incremental deploy
    (one file changed) and a rollback, each measured."""

    def __init__(self, base: Path, hosts, app: Path, parallel: int | None, hardlinks: bool) -> None:  # type: ignore[no-untyped-def]
        self.hosts, self.app = list(hosts), app
        self.stage = stage_for(base, hosts, app, parallel, hardlinks)
        self.parallel = parallel
        self.opts = pipeline.Options(stage="bench", parallel=parallel)
        self.rounds: list[dict[str, float]] = []

    def deploy(self):  # type: ignore[no-untyped-def]
        quiet = Reporter(io.StringIO(), io.StringIO())
        return pipeline.deploy(self.stage, self.opts, quiet, source=str(self.app))

    def first(self) -> float:
        return timed(self.deploy)[0]

    def round(self, floor: bool = False) -> None:
        touch(self.app)
        busy, ctl = machine_busy(), controller_cpu()
        with counting_commands() as seen:
            incr, out = timed(self.deploy)
        busy, ctl = machine_busy() - busy, controller_cpu() - ctl
        per_host = max(seen.count(h.name) for h in self.hosts)
        quiet = Reporter(io.StringIO(), io.StringIO())
        rb_busy, rb_ctl = machine_busy(), controller_cpu()
        back, rb = timed(lambda: pipeline.rollback(self.stage, self.opts, quiet))
        rb_busy, rb_ctl = machine_busy() - rb_busy, controller_cpu() - rb_ctl
        row = {
            "incremental s": incr,
            "files sent": max(getattr(s, "files_transferred", 0) for s in out.uploads.values()),
            "incr. CPU s controller": ctl,
            "incr. CPU s hosts": max(0.0, busy - ctl),
            "commands per host": per_host,
            "rollback s": back,
            "rollback CPU s controller": rb_ctl,
            "rollback CPU s machine": rb_busy,
            "deploy skew ms": (out.skew or 0) * 1000,
            "rollback skew ms": (rb.skew or 0) * 1000,
        }
        if floor:
            width = self.parallel or min(h.parallel for h in self.stage)
            row["SSH floor s"] = ssh_floor(list(self.stage), per_host, width)
        self.rounds.append(row)


class Theirs:
    """The hand-tuned script (bench/handtuned.py) on the same hosts and app. Each run of it
    logs in anew (its masters opened, then closed), as a `fab` run does."""

    def __init__(self, base: Path, hosts, app: Path) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.script = Script(hosts, base / "script" / str(len(hosts)), base / "known_hosts_script")
        self.count = 0
        self.rounds: list[dict[str, float]] = []

    def timed(self, op) -> float:  # type: ignore[no-untyped-def]
        start = time.monotonic()
        self.script.open()
        try:
            op()
        finally:
            self.script.close()
        return time.monotonic() - start

    def first(self) -> float:
        self.count += 1
        return self.timed(lambda: self.script.deploy(self.app, f"r{self.count}"))

    def round(self) -> None:
        touch(self.app)
        self.count += 1
        busy, ctl = machine_busy(), controller_cpu()
        incr = self.timed(lambda: self.script.deploy(self.app, f"r{self.count}"))
        busy, ctl = machine_busy() - busy, controller_cpu() - ctl
        rb_busy = machine_busy()
        back = self.timed(self.script.rollback)
        rb_busy = machine_busy() - rb_busy
        self.rounds.append(
            {"incremental": incr, "rollback": back, "ctl": ctl, "busy": busy, "rb busy": rb_busy}
        )


def median_row(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (the figures are taken one by one)."""
    keys = {k for r in rounds for k in r}
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in keys}


def measure_size(base: Path, hosts, app: Path, repeat: int):  # type: ignore[no-untyped-def]
    """One fleet size: the script and atomicdeploy (parallel default, copy) in alternate
    rounds, so that a slow moment of the machine falls on both; then the other modes."""
    n = len(hosts)
    theirs, ours = Theirs(base, hosts, app), Ours(base, hosts, app, None, False)
    script_first, our_first = theirs.first(), ours.first()
    for i in range(repeat):
        theirs.round()
        ours.round(floor=i == 0)
    script = {**median_row(theirs.rounds), "first": script_first}
    rows = [(label(n, None, False), {**median_row(ours.rounds), "first deploy s": our_first})]
    modes = ((None, True), (1, False)) if n < 100 else ()  # 100 hosts one at a time: minutes
    for parallel, hardlinks in modes:
        if n == 1 and parallel == 1:
            continue
        other = Ours(base, hosts, app, parallel, hardlinks)
        first = other.first()
        other.round(floor=True)
        rows.append((label(n, parallel, hardlinks), {**other.rounds[0], "first deploy s": first}))
    return script, rows


def label(n: int, parallel: int | None, hardlinks: bool) -> str:
    return (
        f"{n} host(s), parallel={'default' if parallel is None else parallel},"
        f" {'upload_hardlinks' if hardlinks else 'copy (default)'}"
    )


def pss_mib(pid: int | None) -> float:
    """A process's proportional set size (shared pages split between their users)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")) / 1024


def print_kit(hosts, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """What the fake hosts cost this machine: start time, memory, ports, descriptors."""
    hosts = list(hosts)
    ports = sorted(h.port for h in hosts)
    memory = sum(pss_mib(h.pid) for h in hosts)
    print(
        f"kit: {len(hosts)} sshd hosts started in {seconds:.1f} s; their listeners hold"
        f" {memory:.0f} MiB (PSS); ports {ports[0]}..{ports[-1]}; this process has"
        f" {len(os.listdir('/proc/self/fd'))} file descriptors open"
    )
    print()


def cell(row: dict[str, float], col: str) -> str:
    if col not in row:
        return "-"
    return f"{row[col]:.0f}" if col.endswith("ms") or col in COUNTS else f"{row[col]:.2f}"


def print_ratios(rows, scripts: dict[int, dict[str, float]], repeat: int) -> None:  # type: ignore[no-untyped-def]
    """atomicdeploy (parallel default, copy) against the hand-tuned script, per size."""
    print()
    print(f"Medians of {repeat} alternating rounds; ratio = atomicdeploy / script.")
    print()
    print(
        "| hosts | first deploy s | second deploy s | ratio | rollback s | ratio"
        " | second deploy, machine CPU s per host | controller CPU s per host"
        " | rollback, machine CPU s per host |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        n = int(name.split()[0])
        if "parallel=default" not in name or "copy" not in name or n not in scripts:
            continue
        s = scripts[n]
        deploy_cpu = r["incr. CPU s controller"] + r["incr. CPU s hosts"]
        print(
            f"| {n} | {r['first deploy s']:.2f} / {s['first']:.2f}"
            f" | {r['incremental s']:.2f} / {s['incremental']:.2f}"
            f" | **{r['incremental s'] / s['incremental']:.2f}**"
            f" | {r['rollback s']:.2f} / {s['rollback']:.2f}"
            f" | **{r['rollback s'] / s['rollback']:.2f}**"
            f" | {deploy_cpu / n:.3f} / {s['busy'] / n:.3f}"
            f" | {r['incr. CPU s controller'] / n:.3f} / {s['ctl'] / n:.3f}"
            f" | {r['rollback CPU s machine'] / n:.3f} / {s['rb busy'] / n:.3f} |"
        )
    print()
    print("Each pair: atomicdeploy / script. Machine CPU: every process on this machine, the")
    print("fake hosts' included; the script's controller CPU leaves out its detached ssh masters.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1,10,30,100")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per size (medians)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="atomicdeploy-fleet-"))
    app = base / "app"
    make_app(app, args.files)
    rows = []
    scripts: dict[int, dict[str, float]] = {}
    started = time.monotonic()
    with LocalHosts(base / "sshd", max(sizes), prefix="n") as all_hosts:
        print_kit(all_hosts, time.monotonic() - started)
        for n in sizes:
            scripts[n], size_rows = measure_size(base, list(all_hosts)[:n], app, args.repeat)
            rows += size_rows
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
        cells = [cell(r, c) for c in cols]
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
    print_ratios(rows, scripts, args.repeat)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
