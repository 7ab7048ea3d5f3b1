"""The run's pure decisions, the dry-run Remote, and one inventory read per `fab` call.

No hosts: the decisions are tables, the dry-run Remote is given no connection it could
use, and the inventory test stops at bad input, before any host would be contacted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from invoke import Program

import atomicdeploy.inventory as inventory_mod
from atomicdeploy import plan, shell, tasks
from atomicdeploy.config import Config, RunInfo
from atomicdeploy.dryrun import DryRemote
from atomicdeploy.errors import AtomicDeployError, ConfigError
from atomicdeploy.hooks import Hooks
from atomicdeploy.inventory import HostConfig
from atomicdeploy.inventory.loader import parse
from atomicdeploy.releases import COMPLETE, FAILED, LIVE, ROLLED_BACK, HostState, ReleaseInfo

R1, R2, R3 = "20261201T000000Z", "20261202T000000Z", "20261203T000000Z"


def host(current: str | None, *releases: tuple[str, str, str]) -> HostState:
    infos = tuple(
        ReleaseInfo(name, state, revision=rev, live=name == current)
        for name, state, rev in releases
    )
    return HostState(current=current, releases=infos, lock_owner=None)


# (live revision per host, the revision asked for, --force) -> nothing to do?
ALREADY_LIVE = [
    ("same revision live on every host", [("abc", "abc")], "abc", False, True),
    ("one host on another revision", [("abc", "abc"), ("old", "old")], "abc", False, False),
    ("--force deploys it again", [("abc", "abc")], "abc", True, False),
    ("no revision known (a directory upload)", [("abc", "abc")], "", False, False),
    ("a host with nothing live", [(None, "")], "abc", False, False),
]


@pytest.mark.parametrize(
    "hosts,revision,force,expected", [c[1:] for c in ALREADY_LIVE], ids=[c[0] for c in ALREADY_LIVE]
)
def test_already_live(hosts, revision, force, expected):
    states = {}
    for i, (rev, _) in enumerate(hosts):
        if rev is None:
            states[f"w{i}"] = host(None)
        else:
            states[f"w{i}"] = host(R2, (R1, COMPLETE, "older"), (R2, LIVE, rev))
    assert plan.already_live(states, revision, force) is expected


# (releases on the host, live one, --release) -> target, or the error's words
ROLLBACK = [
    ("previous complete one", [(R1, COMPLETE), (R2, LIVE)], R2, None, R1),
    ("skips a failed one", [(R1, COMPLETE), (R2, FAILED), (R3, LIVE)], R3, None, R1),
    ("a rolled-back release is a target when named", [(R1, ROLLED_BACK), (R2, LIVE)], R2, R1, R1),
    ("named and complete", [(R1, COMPLETE), (R2, COMPLETE), (R3, LIVE)], R3, R2, R2),
    ("named but failed", [(R1, FAILED), (R2, LIVE)], R2, R1, "is failed, not complete"),
    ("named but absent", [(R2, LIVE)], R2, R1, "does not exist on this host"),
    ("nothing older", [(R2, LIVE)], R2, None, "no complete release older than"),
]


@pytest.mark.parametrize(
    "releases,current,wanted,expected", [c[1:] for c in ROLLBACK], ids=[c[0] for c in ROLLBACK]
)
def test_rollback_to(releases, current, wanted, expected):
    state = host(current, *[(name, st, "") for name, st in releases])
    if expected.startswith("2026"):
        assert plan.rollback_to(state, wanted) == expected
    else:
        with pytest.raises(AtomicDeployError, match=expected):
            plan.rollback_to(state, wanted)


def test_options_name_a_switch_and_a_rollback():
    assert plan.Options(stage="prod").action == "rollback"
    assert plan.Options(stage="prod", switch_only=True).action == "switch"


class NoConnection:
    """Any use of the connection fails the test: a dry run must not send these."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the dry run used the connection ({name})")


def test_a_dry_run_records_what_changes_something_and_runs_no_python_hook():
    remote = DryRemote(
        HostConfig(name="web1", deploy_path="/srv/app", hostname="web1"), NoConnection()
    )
    called = []
    assert remote.run("mkdir -p /srv/app/releases/x", "release") == (0, "")
    remote.call("hook after_upload", "build_info", lambda: called.append(1))
    assert called == []
    assert remote.recorded == [
        ("release", "mkdir -p /srv/app/releases/x"),
        ("hook after_upload", "python: build_info(c, cfg)"),
    ]


def test_a_dry_run_sends_the_read_only_stand_in_in_place_of_the_script(monkeypatch):
    sent = []

    def real_run(self, script, step, **kw):
        sent.append((script, kw.get("read_only")))
        return 0, "state"

    monkeypatch.setattr("atomicdeploy.remote.Remote.run", real_run)
    remote = DryRemote(
        HostConfig(name="web1", deploy_path="/srv/app", hostname="web1"), NoConnection()
    )
    assert remote.run("take the lock", "setup", stand_in="read the state") == (0, "state")
    assert remote.run("read", "state", read_only=True) == (0, "state")
    assert sent == [("read the state", True), ("read", True)]
    assert remote.recorded == [("setup", "take the lock")]


def test_one_fab_call_reads_the_inventory_once(tmp_path: Path, monkeypatch):
    """The stage task hands the inventory it read to the task that follows it."""
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "hosts:\n  web1:\n    deploy_path: /srv/app\n    labels: {stage: test}\n",
        encoding="utf-8",
    )
    reads = []
    real = inventory_mod.load

    def counting(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(inventory_mod, "load", counting)
    program = Program(namespace=tasks.namespace(inv), name="fab", binary="fab")
    with pytest.raises(SystemExit) as exit_:
        # A bad --batch stops before any host is contacted (exit 2).
        program.run(["fab", "test", "deploy", "--batch", "none", "--source", str(tmp_path)])
    assert exit_.value.code == 2
    assert reads == [inv]


# --- roles and host selection ----------------------------------------------------------------


def hosts_with_roles() -> tuple[HostConfig, ...]:
    def h(name: str, *roles: str) -> HostConfig:
        return HostConfig(name=name, deploy_path="/srv/app", hostname=name, roles=roles)

    return (h("web1", "web"), h("web2", "web"), h("worker1", "worker"), h("cron1"))


SELECT = [
    ("everything", None, None, ["web1", "web2", "worker1", "cron1"]),
    ("one host", "web2", None, ["web2"]),
    ("two hosts, stage order", "worker1, web1", None, ["web1", "worker1"]),
    ("a role", None, "web", ["web1", "web2"]),
    ("two roles", None, "worker,web", ["web1", "web2", "worker1"]),
    ("both: a host must match both", "web1,worker1", "web", ["web1"]),
    ("unknown host", "web9", None, "--hosts: web9 not in stage prod (hosts: web1, web2,"),
    ("unknown role", None, "db", "no host of stage prod has the role db (roles: web, worker)"),
    ("nothing matches", "cron1", "web", "no host of stage prod matches both"),
]


@pytest.mark.parametrize(
    "names,roles,expected", [c[1:] for c in SELECT], ids=[c[0] for c in SELECT]
)
def test_select(names, roles, expected):
    if isinstance(expected, list):
        chosen = plan.select(hosts_with_roles(), "prod", names, roles)
        assert [h.name for h in chosen] == expected
    else:
        with pytest.raises(ConfigError) as err:
            plan.select(hosts_with_roles(), "prod", names, roles)
        assert expected in err.value.message


def test_split_line_names_the_run_first_then_the_rest():
    live = {"web1": R2, "web2": R1, "worker1": R1, "cron1": None}
    line = plan.split_line(live, ["web1"])
    assert line == f"web1 on {R2}; web2, worker1 still on {R1}; cron1 still on no release"


def test_once_with_roles_runs_on_the_first_host_of_those_roles():
    peers = (("web1", ("web",)), ("worker1", ("worker",)), ("worker2", ("worker",)))
    run = RunInfo(stage="p", user="u", local_host="l", pid=1, started="t", token="x")

    def cfg(name: str, primary: bool = False) -> Config:
        host = HostConfig(name=name, deploy_path="/srv/app", hostname=name)
        return Config(host=host, run=run, primary=primary, peers=peers)

    assert cfg("web1", primary=True).runs_once(())
    assert not cfg("worker1").runs_once(())
    assert cfg("worker1").runs_once(("worker",)) and not cfg("worker2").runs_once(("worker",))
    assert cfg("web1").runs_once(("worker", "web"))  # one host for both roles
    assert not any(cfg(n).runs_once(("db",)) for n, _ in peers)


def test_python_hooks_with_roles_run_only_on_those_hosts():
    hooks = Hooks()

    def restart(c, cfg): ...

    def everywhere(c, cfg): ...

    hooks.after("switch", restart, roles=["worker"])
    hooks.after("switch", everywhere)
    assert hooks.at("after_switch", ("worker",)) == (restart, everywhere)
    assert hooks.at("after_switch", ("web",)) == (everywhere,)
    assert hooks.at("after_switch") == (restart, everywhere)


def test_a_host_turns_off_steps_the_stage_turns_on():
    inv = parse(
        "config:\n"
        "  deploy_path: /srv/app\n"
        "  nginx: {test: 'true'}\n"
        "  opcache: {socket: /run/php.sock}\n"
        "  warmup: [/]\n"
        "  healthcheck: {url: 'http://127.0.0.1/'}\n"
        "hosts:\n"
        "  web1: {roles: [web]}\n"
        "  worker1: {roles: [worker], nginx: false, opcache: false, warmup: false,"
        " healthcheck: false}\n"
    )
    web, worker = inv.hosts
    assert web.nginx and web.opcache.strategy == "fcgi" and web.warmup and web.healthcheck
    assert worker.nginx is None and worker.opcache.strategy == "none"
    assert worker.warmup == () and worker.healthcheck is None
    assert worker.roles == ("worker",)


@pytest.mark.parametrize(
    "text,words",
    [
        ("roles: [web, 'no space']", "roles has 'no space': a role name is letters, digits"),
        ("roles: web", "roles must be a list of strings"),
        ("hooks: {after_switch: [{run: x, roles: [a b]}]}", ".after_switch: roles has 'a b'"),
        ("hooks: {after_switch: [{run: x, role: [a]}]}", "may have 'once' and 'roles'"),
    ],
)
def test_bad_roles_are_one_line(text, words):
    with pytest.raises(ConfigError) as err:
        parse(f"config:\n  deploy_path: /srv/app\nhosts:\n  web1: {{{text}}}\n")
    assert words in err.value.message


def test_run_and_ssh_commands_are_quoted():
    cmd = "echo $HOME; exit 3 # 'x'"
    got = shell.in_current("/srv/my app/current", cmd)
    quoted = "'echo $HOME; exit 3 # '\"'\"'x'\"'\"''"
    assert got == f"cd -- '/srv/my app/current' && ( eval {quoted} ) 2>&1 </dev/null"
    out = subprocess.run(["sh", "-c", got.replace("/srv/my app/current", "/")], capture_output=True)
    assert out.returncode == 3
    assert shell.login_shell("/s/current", "/s") == (
        'cd -- /s/current 2>/dev/null || cd -- /s 2>/dev/null; exec "${SHELL:-/bin/sh}" -l'
    )


def test_a_recording_remote_shows_what_a_hook_plan_would_send():
    from atomicdeploy.steps import hook
    from atomicdeploy.testing import RecordingRemote

    host = HostConfig(name="web1", hostname="web1", deploy_path="/srv/app")
    run = RunInfo(stage="p", user="u", local_host="l", pid=1, started="t", token="x")
    cfg = Config(host=host, run=run, release=R1, primary=True)
    remote = RecordingRemote(host, answers={"build": "ok"})

    def notify(c, cfg): ...

    hook.run_plan(remote, cfg, [("a", "echo a"), ("py", notify), ("b", "echo b")], "build")
    assert [step for step, _ in remote.sent] == ["build", "py", "build"]
    assert remote.sent[1][0] == "py" and remote.sent[1][1].endswith("notify(c, cfg)")
    assert "echo a" in remote.sent[0][1]


def test_the_fleets_threads_serve_every_phase_within_parallel_and_end_with_it():
    """One pool per run: a phase reuses the threads the one before started, at most
    `parallel` hosts work at once (every host at once when `wide`), results keep the
    inventory's order, a host's failure is its own, a host's work that calls `each` for
    itself runs it in its own thread (never queued behind the busy pool), and close()
    ends the threads."""
    import io
    import threading
    import time

    from atomicdeploy.report import Reporter
    from atomicdeploy.runner import Fleet

    hosts = [HostConfig(name=f"web{i}", deploy_path="/srv/app", hostname="h") for i in range(6)]
    fleet = Fleet(hosts, Reporter(io.StringIO(), io.StringIO(), live=False), parallel=2)
    before = set(threading.enumerate())
    lock, busy, most, seen = threading.Lock(), [0], [0], set()
    stuck = False

    def work(remote):  # type: ignore[no-untyped-def]
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
            seen.add(threading.current_thread())
        time.sleep(0.02)
        with lock:
            busy[0] -= 1
        if remote.name == "web3":
            raise RuntimeError("web3 says no")
        return remote.name

    try:
        done, failed = fleet.each(work, phase="prepare")
        assert most[0] == 2
        assert list(done) == ["web0", "web1", "web2", "web4", "web5"]
        assert list(failed) == ["web3"] and str(failed["web3"]) == "web3 says no"
        most[0] = 0
        for _ in range(3):
            fleet.each(work, wide=True)
        assert most[0] == 6
        assert len(seen) == 6  # six hosts at once needed six threads; no phase started more
        assert len(set(threading.enumerate()) - before) == 6

        def unlock_own(remote):  # type: ignore[no-untyped-def]
            # A host's own work calling `each` for itself (its unlock after a failed
            # hook), while every thread of the pool is busy with the outer phase.
            worker = threading.current_thread()
            done, _ = fleet.each(lambda r: (r.name, threading.current_thread()), [remote.name])
            return done[remote.name] == (remote.name, worker)

        got: dict = {}
        outer = threading.Thread(
            target=lambda: got.update(out=fleet.each(unlock_own, wide=True)), daemon=True
        )
        outer.start()
        outer.join(10)
        stuck = outer.is_alive()  # then close() would wait for the stuck threads too
        assert not stuck, "a host's own `each` waited behind the busy pool"
        done, failed = got["out"]
        assert failed == {} and all(done.values()) and len(done) == 6
    finally:
        if not stuck:
            fleet.close()
    assert not (set(threading.enumerate()) - before) - {threading.current_thread()}


class _InterruptedPool:
    """A fleet's pool where Ctrl-C lands as a host is handed to a thread: `after` the
    hand-over (the host works), or before it (it never does)."""

    def __init__(self, pool, after: bool, started) -> None:  # type: ignore[no-untyped-def]
        self.pool, self.after, self.started = pool, after, started

    def submit(self, *args):  # type: ignore[no-untyped-def]
        if self.after:
            self.pool.submit(*args)
            self.started.wait(5)  # the host's thread has taken it: it can no longer be cancelled
        raise KeyboardInterrupt


@pytest.mark.parametrize("after", [True, False], ids=["after-hand-over", "before-hand-over"])
def test_an_interrupt_as_a_host_is_handed_to_a_thread_leaves_no_host_working(after):
    """`each` re-raises an interrupt only once no host's work is running: one that landed
    just after a host was handed to a thread waits for that host (the caller cleans up
    next, and must not race it); one that landed just before leaves it never started."""
    import io
    import threading
    import time

    from atomicdeploy.report import Reporter
    from atomicdeploy.runner import Fleet

    hosts = [HostConfig(name=f"web{i}", deploy_path="/srv/app", hostname="h") for i in range(2)]
    fleet = Fleet(hosts, Reporter(io.StringIO(), io.StringIO(), live=False))
    pool = fleet._workers()
    ran, started, finished = [], threading.Event(), threading.Event()
    fleet._workers = lambda: _InterruptedPool(pool, after, started)  # type: ignore[method-assign]

    def work(remote):  # type: ignore[no-untyped-def]
        ran.append(remote.name)
        started.set()
        time.sleep(0.3)
        finished.set()

    try:
        with pytest.raises(KeyboardInterrupt):
            fleet.each(work, wide=True)
        if after:
            assert ran == ["web0"] and finished.is_set(), "returned while web0 still worked"
        else:
            time.sleep(0.1)
            assert ran == [], "a host started after the interrupt"
    finally:
        fleet._workers = lambda: pool  # type: ignore[method-assign]
        fleet.close()


def test_a_queued_host_that_close_cancels_is_never_waited_for():
    """close() cancels a pool's queued work: the host's own future is cancelled with it and
    its waiter told at once (no thread ever will); one already running is left alone."""
    from concurrent.futures import Future, wait

    from atomicdeploy.runner import _cancelled_with

    work: Future[None] = Future()
    work.cancel()
    queued: Future[str] = Future()
    _cancelled_with(queued, work)
    done, _ = wait([queued], timeout=5)
    assert done == {queued} and queued.cancelled()
    running: Future[str] = Future()
    assert running.set_running_or_notify_cancel()
    _cancelled_with(running, work)
    assert running.running()
    finished: Future[None] = Future()
    finished.set_result(None)
    other: Future[str] = Future()
    _cancelled_with(other, finished)  # work that ran: nothing to do
    assert not other.cancelled()
