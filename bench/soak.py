"""Soak: deploy-and-rollback cycles on a fleet while two of its hosts serve traffic.

Starts `--hosts` loopback sshd hosts; the first `--web` of them (2) also run nginx + php-fpm
(opcache on, validate_timestamps=0) serving their deploy path through atomicdeploy's nginx
include, as the integration tests' sites do. One stage, keep_releases 3. After a first deploy,
a child process keeps the kit's keep-alive load (tests/kit/load.py) on every web host for the
whole soak, while this process runs `--cycles` cycles, each a deploy of a new version of the
example app and then a rollback, through the library (pipeline.deploy / pipeline.rollback,
quiet reporter), and measures:
  - over every response of the soak, with the kit's judge() (in the load's process, which
    keeps every sample): failed (not 200, or no response), mixed (the files of two versions
    in one response) and stale (started after a deploy or rollback returned, before the next
    began, answered by another version than the one it made live);
  - this process, the controller: resident memory (VmRSS), open file descriptors and threads
    at the first, middle and last cycle, and their peaks (VmHWM; descriptors and threads
    sampled every 50 ms by one thread of this script, counted among the threads); and the
    blocks Python's allocator holds then (sys.getallocatedblocks) and the C heap in use
    (glibc's mallinfo2), which grow if objects or C allocations leak, where RSS also moves
    with what the allocators keep for reuse (Python's arenas, glibc's per-thread arenas);
  - after each cycle, on every host: `releases/` holding at most keep_releases + 1 (the
    rollback target) directories, and no process left, neither under its sshd listener nor
    anywhere else in its deploy path (2 s of grace).
  - at the end, every line of the web hosts' error logs (PHP's, php-fpm's warnings, nginx's
    at `warn`): none in a clean run, and the cause of a failed response when there is one.
Figures are taken at cycle 1, the middle one and the last, and every 50th cycle of a longer run.
A deploy or rollback is followed by `--pause` seconds (0.5) so that requests land after it.
`--reset-above 0` makes every deploy and rollback reset the web hosts' opcache (by default the
library resets it only when it fills): under load, such a reset can kill a php-fpm worker.
`--opcache fpm-reload` has php-fpm reloaded gracefully (USR2) at every deploy and rollback instead.
This process deploys again and again, so it calls atomicdeploy.keep_memory_flat() first, as
such a process should; `--glibc-defaults` leaves glibc's allocator as it is, to see what it keeps.
Exit status 1 if an invariant was violated, else 0. Not a test: it prints figures.
Usage: python bench/soak.py [--cycles 100] [--hosts 10]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import ctypes
import gc
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from types import FrameType

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atomicdeploy import inventory, keep_memory_flat, pipeline  # noqa: E402
from atomicdeploy.inventory import HostConfig  # noqa: E402
from atomicdeploy.inventory.checks import OpcacheConfig  # noqa: E402
from atomicdeploy.plan import Outcome  # noqa: E402
from atomicdeploy.report import Reporter  # noqa: E402
from atomicdeploy.testing import LocalHost, LocalHosts, write_inventory  # noqa: E402
from tests.kit.load import (  # noqa: E402
    Load,
    Sample,
    Verdict,
    judge,
    set_version,
    stale_samples,
)
from tests.kit.web import WebHost  # noqa: E402

KEEP = 3  # keep_releases
GRACE = 2.0  # seconds a host's processes get to end after a cycle
STAGE = "soak"


# --- the controller --------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    rss_mib: float
    fds: int
    threads: int
    blocks: int = 0  # Python's own allocator: blocks in use (after a collection, at the marks)
    c_heap_mib: float = 0.0  # the C allocator's bytes in use (glibc's mallinfo2), at the marks


def status_kib(field_name: str) -> int:
    """A figure of /proc/self/status (kB for the Vm* ones)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return 0


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2.split(" ")]


def c_heap_in_use() -> float:
    """MiB the C allocator has handed out and not had back (glibc 2.33 and later; else 0).

    RSS also holds what was freed but kept by the allocator for reuse; this does not, so
    it grows only if C allocations leak."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return 0.0
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


def open_fds() -> int:
    """This process's descriptors, less those the sampler thread may hold at that moment
    (Peaks reads /proc/self/status and lists /proc/self/fd every 50 ms). This listing's own
    descriptor is closed by the time it is read, so it is never counted either."""
    listing = f"/proc/{os.getpid()}/fd"
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            fds += not target.endswith("/status") and target != listing
    return fds


def controller_now() -> Figures:
    """This process's resident memory, open descriptors, (OS) threads, Python blocks and
    C heap in use."""
    return Figures(
        status_kib("VmRSS") / 1024,
        open_fds(),
        status_kib("Threads"),
        sys.getallocatedblocks(),
        c_heap_in_use(),
    )


class Peaks:
    """The most descriptors and threads this process held, sampled every 50 ms."""

    def __init__(self) -> None:
        self.fds = self.threads = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="soak-peaks", daemon=True)

    def __enter__(self) -> Peaks:
        with contextlib.suppress(OSError):  # VmHWM from now on (Linux 4.0 and later)
            Path("/proc/self/clear_refs").write_text("5")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()

    def _sample(self) -> None:
        # Only the two counts: controller_now's readlinks and mallinfo2 (which locks every
        # malloc arena) 20 times a second would weigh on the runs being measured.
        while not self._halt.wait(0.05):
            self.fds = max(self.fds, len(os.listdir("/proc/self/fd")))
            self.threads = max(self.threads, status_kib("Threads"))

    def figures(self) -> Figures:
        return Figures(status_kib("VmHWM") / 1024, self.fds, self.threads)


# --- the traffic -------------------------------------------------------------------------------
def load_child(urls: list[str], clients: int) -> None:
    """In the child process: the kit's load on every URL until stdin closes; then, for the
    events read from stdin, the kit's verdict and the stale count, as JSON on stdout. Ctrl-C
    is the parent's to handle: it closes stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loads = [Load(u, clients=clients, max_seconds=7 * 24 * 3600, max_requests=10**9) for u in urls]
    for load in loads:
        load.start()
    deadline = time.monotonic() + 30
    while not all(load.samples for load in loads) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("ready" if all(load.samples for load in loads) else "no response", flush=True)
    events = [Event(*e) for e in json.loads(sys.stdin.read() or "[]")]
    samples = [s for load in loads for s in load.stop()]
    failed = [(s.start, s.end, s.status, s.body[:160]) for s in samples if s.status != 200]
    late = stale(samples, events)
    verdict = asdict(judge(samples))
    print(json.dumps({"verdict": verdict, "stale": explain_stale(late), "failed": failed}))


class Traffic:
    """load_child in its own process, so that its threads, sockets and samples (a few hundred
    MB over a long soak) are not counted as the controller's;
    `with Traffic(...) as t: ...; verdict, stale = t.stop(events)`."""

    def __init__(self, urls: list[str], clients: int) -> None:
        self.args = [sys.executable, __file__, "--clients", str(clients), "--load-child", *urls]
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Traffic:
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        try:
            said = self.proc.stdout.readline().strip()
            if said != "ready":
                raise RuntimeError(f"the load did not start: {said or 'it exited'}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def stop(self, events: list[Event]) -> tuple[Verdict, list[str], list[Sample]]:
        """Stop the load; its verdict over every request, the stale responses (each told in
        a line), and the failed responses."""
        assert self.proc is not None
        said, _ = self.proc.communicate(json.dumps([astuple(e) for e in events]), timeout=600)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the load exited with status {self.proc.returncode}")
        out = json.loads(said)
        failed = [Sample(start, end, status, body) for start, end, status, body in out["failed"]]
        return Verdict(**out["verdict"]), list(out["stale"]), failed

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the hosts -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    ppid: int
    cwd: str
    cmd: str


def processes() -> dict[int, Proc]:
    """Every live process (zombies count as gone): parent, working directory, command."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(Path(entry.path, "cwd"))
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            found[int(entry.name)] = Proc(int(fields[1]), cwd, cmd.strip()[:120])
    return found


def descendants(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    """Every process under `roots` (not the roots themselves), following ppid chains."""
    kids: dict[int, list[int]] = {}
    for pid, p in procs.items():
        kids.setdefault(p.ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for kid in kids.get(todo.pop(), []):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def left_over(hosts: Sequence[LocalHost], daemons: set[int]) -> dict[str, list[str]]:
    """Per host, the processes left: under its sshd listener, or working in its deploy path
    without belonging to a web daemon (php-fpm works in the release it runs)."""
    procs = processes()
    ours = descendants(procs, daemons) | daemons | {os.getpid()}
    found: dict[str, list[str]] = {}
    for h in hosts:
        assert h.pid is not None
        under = descendants(procs, {h.pid})
        path = str(h.deploy_path)
        inside = {
            pid
            for pid, p in procs.items()
            if (p.cwd == path or p.cwd.startswith(path + "/")) and pid not in ours
        }
        found[h.name] = [f"{pid} {procs[pid].cmd}" for pid in sorted(under | inside)]
    return found


def release_dirs(host: LocalHost) -> int:
    with os.scandir(host.deploy_path / "releases") as entries:
        return sum(1 for e in entries if e.is_dir(follow_symlinks=False))


# --- the soak ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """A deploy or rollback: when it started and returned, and the version it made live."""

    action: str
    started: float
    returned: float
    version: str
    switched: float = math.inf  # the first host's rename (monotonic; `returned` if unknown)


@dataclass
class Findings:
    events: list[Event] = field(default_factory=list)
    controller: dict[int, Figures] = field(default_factory=dict)
    most_releases: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    strays: int = 0


class Soak:
    def __init__(
        self,
        stage: Sequence[HostConfig],
        hosts: Sequence[LocalHost],
        webs: Sequence[WebHost],
        app: Path,
        pause: float,
    ) -> None:
        self.stage, self.hosts, self.app, self.pause = stage, hosts, app, pause
        self.daemons = {pid for web in webs for pid in web.pids}
        self.opts = pipeline.Options(stage=STAGE)
        self.versions: dict[str, str] = {}  # release name -> version of the app in it
        self.found = Findings()

    def act(self, version: str | None) -> None:
        """A deploy of `version`, or (None) a rollback; records what it made live."""
        err = io.StringIO()
        quiet = Reporter(io.StringIO(), err)
        started = time.monotonic()
        try:
            if version is None:
                out = pipeline.rollback(self.stage, self.opts, quiet)
            else:
                set_version(self.app, version)
                out = pipeline.deploy(self.stage, self.opts, quiet, source=str(self.app))
        except BaseException:
            print(err.getvalue(), file=sys.stderr)
            raise
        returned = time.monotonic()
        if version is not None:
            self.versions.update(dict.fromkeys(out.release.values(), version))
        action = "rollback" if version is None else "deploy"
        # The hosts' clock is this machine's: their first rename, on the monotonic clock.
        renamed = min(out.switched_at.values(), default=None)
        switched = returned if renamed is None else renamed - (time.time() - time.monotonic())
        live = self.live(out, action)
        self.found.events.append(Event(action, started, returned, live, switched))

    def live(self, out: Outcome, action: str) -> str:
        live = sorted({self.versions.get(r, f"release {r}") for r in out.release.values()})
        if len(live) != 1 or len(out.release) != len(self.stage):
            self.found.violations.append(f"{action}: live on the hosts: {out.release}")
        return live[0] if live else ""

    def check_hosts(self, cycle: int) -> None:
        """Release directories within their bound, no process left (after the grace)."""
        for h in self.hosts:
            count = release_dirs(h)
            self.found.most_releases[h.name] = max(self.found.most_releases.get(h.name, 0), count)
            if count > KEEP + 1:
                self.found.violations.append(f"cycle {cycle}: {h.name} has {count} releases")
        deadline = time.monotonic() + GRACE
        left = left_over(self.hosts, self.daemons)
        while any(left.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
            left = left_over(self.hosts, self.daemons)
        for name, procs in left.items():
            self.found.strays += len(procs)
            self.found.violations += [f"cycle {cycle}: {name}: left running: {p}" for p in procs]

    def cycles(self, count: int) -> None:
        # 1, the middle, the last; and every 50th in a longer run, to tell a level from a rise
        marks = {1, max(1, count // 2), count, *range(50, count, 50)}
        for cycle in range(1, count + 1):
            self.act(str(cycle))
            time.sleep(self.pause)
            self.act(None)
            returned = time.monotonic()
            self.check_hosts(cycle)
            time.sleep(max(0.0, self.pause - (time.monotonic() - returned)))
            if cycle in marks:
                gc.collect()  # blocks held by garbage not yet collected are not growth
                self.found.controller[cycle] = controller_now()


def write_stage(
    base: Path,
    hosts: Sequence[LocalHost],
    webs: Sequence[WebHost],
    app: Path,
    reset_above: int | None = None,
    strategy: str = "fcgi",
) -> tuple[HostConfig, ...]:
    """The stage's inventory: the integration tests' site settings, the web hosts' keys
    (and `opcache.reset_above`, if given; with `fpm-reload`, php-fpm's graceful reload)."""
    path = write_inventory(
        base / "inventory.yml",
        hosts,
        stage=STAGE,
        known_hosts=base / "known_hosts",
        source=str(app),
        shared_dirs=["storage"],
        shared_files=[".env"],
        writable_dirs=["storage"],
        keep_releases=KEEP,
    )
    data = yaml.safe_load(path.read_text())
    for web in webs:
        data["hosts"][web.name].update(web.inventory_settings())
        if reset_above is not None:
            data["hosts"][web.name]["opcache"]["reset_above"] = reset_above
        if strategy == "fpm-reload":
            data["hosts"][web.name]["opcache"].update(
                strategy=strategy, reload=web.fpm_reload_command()
            )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return inventory.load(path).stage(STAGE)


# --- the figures ---------------------------------------------------------------------------
def stale(samples: list[Sample], events: list[Event]) -> list[tuple[Event, Sample]]:
    """The kit's stale_samples for each event, over the requests that started after it
    returned and before the next one started: each such request, with its event. A request
    still open when the next one's first host switched may be answered by the version that
    one makes live (a slow one, or one retried on a new connection): that is not stale."""
    samples = sorted(samples, key=lambda s: s.start)
    starts = [s.start for s in samples]
    found = []
    for i, ev in enumerate(events):
        nxt = events[i + 1] if i + 1 < len(events) else None
        until = nxt.started if nxt else math.inf
        window = [
            s
            for s in samples[
                bisect.bisect_right(starts, ev.returned) : bisect.bisect_left(starts, until)
            ]
            if not (nxt and s.end > nxt.switched and s.version == nxt.version)
        ]
        found += [(ev, s) for s in stale_samples(window, ev.returned, ev.version)]
    return found


def explain_stale(found: list[tuple[Event, Sample]]) -> list[str]:
    """Each stale response: how long after its deploy or rollback returned, and what it said."""
    return [
        f"{s.start - ev.returned:+.3f} s after a {ev.action} that made {ev.version!r} live"
        f" returned (it took {ev.returned - ev.started:.2f} s), status {s.status} in"
        f" {s.end - s.start:.3f} s{' (retried)' if s.retried else ''}: {s.body.strip()[:160]!r}"
        for ev, s in found
    ]


def per_host(most: dict[str, int]) -> str:
    if len(set(most.values())) == 1:
        return f"{next(iter(most.values()))} on each of the {len(most)} hosts"
    return ", ".join(f"{name} {n}" for name, n in most.items())


def mean(events: list[Event], action: str) -> float:
    spans = [e.returned - e.started for e in events[1:] if e.action == action]
    return sum(spans) / max(1, len(spans))


def controller_rows(found: Findings, peak: Figures) -> list[tuple[str, str]]:
    marks = sorted(found.controller)
    at = f"at cycle {' / '.join(map(str, marks))} (peak)"
    figs = [found.controller[m] for m in marks]
    peak = Figures(
        max([peak.rss_mib, *(f.rss_mib for f in figs)]),
        max([peak.fds, *(f.fds for f in figs)]),
        max([peak.threads, *(f.threads for f in figs)]),
    )
    rss = " / ".join(f"{f.rss_mib:.1f}" for f in figs)
    return [
        (f"controller RSS MiB {at}", f"{rss} ({peak.rss_mib:.1f})"),
        (f"controller open fds {at}", f"{' / '.join(str(f.fds) for f in figs)} ({peak.fds})"),
        (
            f"controller threads {at}",
            f"{' / '.join(str(f.threads) for f in figs)} ({peak.threads})",
        ),
        (
            f"controller Python blocks in use at cycle {' / '.join(map(str, marks))}",
            " / ".join(f"{f.blocks:,}" for f in figs),
        ),
        (
            f"controller C heap in use MiB at cycle {' / '.join(map(str, marks))}",
            " / ".join(f"{f.c_heap_mib:.1f}" for f in figs),
        ),
    ]


def explain(failed: list[Sample], events: list[Event]) -> list[str]:
    """Each failed response: when, against the deploy or rollback nearest to it, and what
    it said."""
    lines = []
    for s in failed:
        near = min(events, key=lambda e: min(abs(s.start - e.started), abs(s.start - e.returned)))
        lines.append(
            f"status {s.status} {s.start - near.started:+.3f} s from the start of a {near.action}"
            f" (it took {near.returned - near.started:.2f} s), answered in"
            f" {s.end - s.start:.3f} s: {s.body.strip()[:160]!r}"
        )
    return lines


def opcache(args: argparse.Namespace) -> str:
    """The web hosts' opcache strategy, as the table names it."""
    if args.opcache == "fpm-reload":
        return "fpm-reload (php-fpm's graceful reload, process_control_timeout 10s)"
    return f"fcgi, reset_above {reset_above(args.reset_above)}"


def reset_above(given: int | None) -> str:
    default = OpcacheConfig().reset_above
    if given is None:
        return f"{default} (the default: a reset only when the opcache fills)"
    return f"{given} (a reset at every deploy and rollback)" if given == 0 else str(given)


def error_log_lines(webs: Sequence[WebHost]) -> list[str]:
    """What the web hosts logged as errors: PHP's error log, php-fpm's warnings (a worker
    that died, a slow request) and nginx's error log at `warn`. A clean soak logs none; when a
    response failed, these say why."""
    lines = []
    for web in webs:
        for path, only in (
            (web.php_error_log, ("",)),
            (web.fpm_log, ("WARNING", "ERROR", "ALERT")),
            (web.nginx_error_log, ("",)),
        ):
            text = path.read_text(errors="replace") if path.exists() else ""
            keep = [ln for ln in text.splitlines() if ln.strip() and any(w in ln for w in only)]
            lines += [f"{web.name} {path.name}: {ln}" for ln in keep]
    return lines


def allocator(glibc_defaults: bool, flat: bool) -> str:
    """How this process's allocator ran: the figures of memory mean nothing without it."""
    if glibc_defaults:
        return "glibc's defaults (--glibc-defaults)"
    if not flat:
        return "as it was: atomicdeploy.keep_memory_flat() did not apply here (not glibc)"
    return "atomicdeploy.keep_memory_flat(), called at the start"


def report(
    args: argparse.Namespace,
    failed: list[Sample],
    verdict: Verdict,
    late: list[str],
    found: Findings,
    peak: Figures,
    seconds: tuple[float, float],
    logged: list[str],
) -> int:
    rows = [
        ("cycles (a deploy, then a rollback)", str(args.cycles)),
        ("hosts", f"{args.hosts} ({args.web} web under load, {args.hosts - args.web} plain)"),
        ("opcache", opcache(args)),
        ("controller's allocator", allocator(args.glibc_defaults, args.flat)),
        ("requests", f"{verdict.requests:,} ({verdict.retried} retried on a closed keep-alive)"),
        ("failed", str(verdict.failed)),
        ("mixed", str(verdict.mixed)),
        ("stale", str(len(late))),
        ("lines in the web hosts' error logs", str(len(logged))),
    ]
    rows += controller_rows(found, peak)
    rows += [
        (f"most release directories seen (bound {KEEP + 1})", per_host(found.most_releases)),
        ("processes left on a host after a cycle", str(found.strays)),
        ("wall time: whole run / cycles", f"{seconds[0]:.1f} s / {seconds[1]:.1f} s"),
        (
            "mean per cycle",
            f"{seconds[1] / args.cycles:.2f} s (deploy {mean(found.events, 'deploy'):.2f} s,"
            f" rollback {mean(found.events, 'rollback'):.2f} s, pauses 2 x {args.pause} s)",
        ),
    ]
    print("| soak | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for line in found.violations[:20]:
        print(f"violated: {line}")
    for line in explain(failed, found.events)[:20]:
        print(f"failed: {line}")
    for line in late[:20]:
        print(f"stale: {line}")
    for line in logged[:40]:
        print(f"logged: {line}")
    bad = verdict.failed + verdict.mixed + len(late) + len(found.violations)
    return 1 if bad else 0


def soak(args: argparse.Namespace, base: Path) -> int:
    began = time.monotonic()
    app = base / "app"
    shutil.copytree(REPO / "examples" / "app", app)
    with (
        LocalHosts(base / "sshd", args.hosts, prefix="soak") as hosts,
        contextlib.ExitStack() as st,
    ):
        webs = [
            st.enter_context(WebHost(h.name, base / "web" / h.name, h.deploy_path))
            for h in list(hosts)[: args.web]
        ]
        stage = write_stage(base, list(hosts), webs, app, args.reset_above, args.opcache)
        run = Soak(stage, list(hosts), webs, app, args.pause)
        run.act("0")
        traffic = st.enter_context(Traffic([w.url("/") for w in webs], args.clients))
        started = time.monotonic()
        with Peaks() as peaks:
            run.cycles(args.cycles)
        cycled = time.monotonic() - started
        peak = peaks.figures()
        verdict, late, failed = traffic.stop(run.found.events)
        logged = error_log_lines(webs)
    seconds = (time.monotonic() - began, cycled)
    return report(args, failed, verdict, late, run.found, peak, seconds, logged)


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds every `with` and `finally`: all is cleaned up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--web", type=int, default=2, help="how many of the hosts serve, under load")
    ap.add_argument("--clients", type=int, default=2, help="load clients per web host")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds after each deploy/rollback")
    ap.add_argument(
        "--reset-above",
        type=int,
        help="opcache.reset_above for the web hosts (0: an opcache reset at every deploy and"
        " rollback; default: the library's, which resets only when the opcache fills)",
    )
    ap.add_argument(
        "--opcache",
        choices=["fcgi", "fpm-reload"],
        default="fcgi",
        help="the web hosts' opcache strategy (fpm-reload: a graceful reload of php-fpm at"
        " every deploy and rollback, instead of a reset through its socket)",
    )
    ap.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="leave glibc's trim threshold and top pad as they are (by default the soak, a"
        " process that deploys again and again, calls atomicdeploy.keep_memory_flat())",
    )
    ap.add_argument("--load-child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        load_child(args.load_child, args.clients)
        return
    if not 1 <= args.web <= args.hosts or args.cycles < 1:
        ap.error("need --cycles >= 1 and 1 <= --web <= --hosts")
    if args.opcache == "fpm-reload" and args.reset_above is not None:
        ap.error("--reset-above is for the fcgi strategy")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    args.flat = not args.glibc_defaults and keep_memory_flat()
    base = Path(tempfile.mkdtemp(prefix="atomicdeploy-soak-"))
    try:
        status = soak(args, base)
    except KeyboardInterrupt:
        print("soak: interrupted; what it started is stopped", file=sys.stderr)
        status = 130
    finally:
        shutil.rmtree(base, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
