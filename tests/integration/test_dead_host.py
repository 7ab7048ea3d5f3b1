"""A host that stops answering mid-deploy (its sshd frozen with SIGSTOP) is found dead by the
SSH keepalive within seconds, not after command_timeout; the run then fails (or goes on with
--allow-partial) as for any failed host, and the invariants hold."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from atomicdeploy.testing import LocalHosts
from tests.kit.web import children

from .conftest import write_app

pytestmark = pytest.mark.integration

FROZEN = "frozen1"


def tree(pid: int) -> set[int]:
    found, todo = {pid}, [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def signal_tree(pid: int, sig: int) -> None:
    for p in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)


@pytest.fixture
def frozen(project, tmp_path):
    """The project's hosts plus one that the test can freeze; keepalive 1 s x 2."""
    project.config.update(
        server_alive_interval=1, server_alive_count_max=2, connect_timeout=2, writable_dirs=[]
    )
    with LocalHosts(tmp_path / "frozen", 1, prefix="frozen") as extra:
        project.hosts.append(extra[0])
        project.frozen = extra[0]
        try:
            yield project
        finally:
            signal_tree(extra[0].pid, signal.SIGCONT)
            project.hosts.pop()


def deploy_and_freeze_when(project, marker, *args: str):
    """Start a deploy; once `marker` exists, freeze the frozen host's sshd (and its
    sessions); return the finished process and how long the deploy took."""
    project.write_inventory()
    start = time.monotonic()
    proc = project.start("test", "deploy", *args)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()
    signal_tree(project.frozen.pid, signal.SIGSTOP)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, time.monotonic() - start


def currents(project) -> dict[str, str | None]:
    return {h.name: project.current(h.name) for h in project.hosts}


def test_a_host_frozen_during_prepare_fails_the_deploy_in_seconds(frozen):
    p = frozen
    p.ok("test", "deploy")
    before = currents(p)
    marker = p.deploy_path(FROZEN) / "reached-upload"
    p.overrides[FROZEN] = {"hooks": {"after_upload": [f"touch {marker}; sleep 1"]}}
    write_app(p.app, "2")
    code, out, err, took = deploy_and_freeze_when(p, marker)
    assert code == 1, out + err
    assert f"[{FROZEN}] failed at step" in err and "no answer from the host for" in err
    assert "server_alive_interval x server_alive_count_max" in err
    print(f"frozen during prepare: the deploy failed after {took:.1f} s")
    assert took < 40, took  # found by the keepalive, not command_timeout (900 s)
    signal_tree(p.frozen.pid, signal.SIGCONT)
    assert currents(p) == before  # nothing went live anywhere
    assert not any(p.locked(h.name) for h in p.hosts if h.name != FROZEN)


@pytest.mark.parametrize("partial", [False, True])
def test_a_host_frozen_at_go_live_is_given_up_and_the_stage_settles(frozen, partial):
    p = frozen
    p.ok("test", "deploy")
    before = currents(p)
    marker = p.deploy_path("web1") / "reached-once"
    p.config["hooks"] = {
        "before_switch": [{"run": f"touch {marker}; sleep 1", "once": True}],
    }
    write_app(p.app, "2")
    args = ("--allow-partial",) if partial else ()
    code, out, err, took = deploy_and_freeze_when(p, marker, *args)
    assert f"[{FROZEN}] failed at step" in err and "no answer from the host for" in err
    print(f"frozen at go-live (allow_partial={partial}): exit {code} after {took:.1f} s")
    assert took < 40, took
    signal_tree(p.frozen.pid, signal.SIGCONT)
    after = currents(p)
    assert after[FROZEN] == before[FROZEN]  # never switched
    others = [h.name for h in p.hosts if h.name != FROZEN]
    if partial:
        assert code == 3, out + err
        assert all(after[n] != before[n] for n in others)  # kept on the new release
    else:
        assert code == 1, out + err
        assert all(after[n] == before[n] for n in others)  # switched back
    assert not any(p.locked(n) for n in others)


def test_a_host_frozen_before_a_rollback_stops_it_in_seconds_with_nothing_moved(frozen):
    """The other hosts lock, read and arm meanwhile; each is then told `no`."""
    p = frozen
    p.write_inventory()
    p.ok("test", "deploy")
    write_app(p.app, "2")
    p.ok("test", "deploy")
    before = currents(p)
    logs = {h.name: p.log(h.name) for h in p.hosts}
    signal_tree(p.frozen.pid, signal.SIGSTOP)
    start = time.monotonic()
    proc = p.fab("test", "rollback", timeout=120)
    took = time.monotonic() - start
    signal_tree(p.frozen.pid, signal.SIGCONT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"[{FROZEN}]" in proc.stderr, proc.stderr
    print(f"frozen before a rollback: it failed after {took:.1f} s")
    assert took < 40, took
    assert currents(p) == before
    assert {h.name: p.log(h.name) for h in p.hosts} == logs
    assert not any(p.locked(h.name) for h in p.hosts)
