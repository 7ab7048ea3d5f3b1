"""Fleet semantics on 10+ real sshd hosts: barrier, bounded pool, revert, interrupts."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import threading
import time

import pytest

from atomicdeploy.testing import LocalHosts

from .conftest import write_app
from .invariants import record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def fleet_hosts(tmp_path_factory):
    with LocalHosts(tmp_path_factory.mktemp("fleet"), 10, prefix="node") as hosts:
        yield hosts


@pytest.fixture
def fleet(project, fleet_hosts):
    project.hosts = list(fleet_hosts)
    project.config["parallel"] = 4
    return project


def state(project):
    return {
        h.name: (project.current(h.name), tuple(project.releases(h.name)), project.locked(h.name))
        for h in project.hosts
    }


def test_ten_hosts_go_live_together_with_a_summary_and_the_switch_skew(fleet):
    proc = fleet.ok("test", "deploy")
    name = re.search(r"deployed (\S+) to", proc.stdout).group(1)
    assert {fleet.current(h.name) for h in fleet.hosts} == {f"releases/{name}"}
    assert re.search(
        r"^host\s+release\s+result\s+lock s\s+prepare s\s+go-live s\s+health s"
        r"\s+finish s",
        proc.stdout,
        re.M,
    )
    for h in fleet.hosts:
        assert re.search(rf"^{h.name}\s+{name}\s+live\s+[\d.]+", proc.stdout, re.M)
    assert re.search(
        r"switch skew: \d+ ms between the first and the last host's switch"
        r" \(10 hosts\)",
        proc.stdout,
    )


def test_a_stopped_host_means_nothing_goes_live_anywhere(fleet, tmp_path):
    fleet.ok("test", "deploy")
    with LocalHosts(tmp_path / "down", 1, prefix="down") as extra:
        fleet.hosts.append(extra[0])
        fleet.ok("test", "deploy")
    before = state(fleet)  # down1's sshd is stopped now
    write_app(fleet.app, "2")
    proc = fleet.fab("test", "deploy")
    assert proc.returncode == 1
    assert "[down1] failed at step 'setup' (not live): cannot connect" in proc.stderr
    down = fleet.hosts.pop()
    assert (
        record(
            fleet,
            "fault",
            "1 of 11 hosts stopped before the deploy",
            "nothing changed on the 10 others",
            sentinels=False,
        )
        == []
    )
    fleet.hosts.append(down)
    assert state(fleet) == before


def test_one_failing_upload_removes_the_new_release_everywhere(fleet, tmp_path):
    fleet.ok("test", "deploy")
    before = state(fleet)
    bad = fleet.hosts[3]
    # A file where the host's upload cache should be: rsync cannot write into it.
    cache = fleet.deploy_path(bad.name) / ".dep" / "upload"
    shutil.rmtree(cache)
    cache.write_text("not a directory\n")
    write_app(fleet.app, "2")
    proc = fleet.fab("test", "deploy")
    assert proc.returncode == 1
    assert f"[{bad.name}] failed at step 'upload' (not live): rsync failed" in proc.stderr
    assert "prepare failed on 1/10 host(s)" in proc.stderr
    assert (
        record(
            fleet,
            "fault",
            "upload fails on 1 of 10 hosts",
            "new release removed on all 10; nothing live",
            sentinels=False,
        )
        == []
    )
    assert state(fleet) == before
    for h in fleet.hosts:
        assert fleet.log(h.name)[-1]["state"] == "failed"


def _break_go_live(fleet, host) -> None:
    # nginx -t passes (`true`) but the reload fails: only go-live can fail this way.
    fleet.overrides = {
        host.name: {"nginx": {"test": "true", "reload": "false", "pid_file": "/nonexistent"}}
    }


def test_a_go_live_failure_switches_the_live_hosts_back(fleet):
    first = re.search(r"deployed (\S+) to", fleet.ok("test", "deploy").stdout).group(1)
    bad = fleet.hosts[7]
    _break_go_live(fleet, bad)
    write_app(fleet.app, "2")
    proc = fleet.fab("test", "deploy")
    assert proc.returncode == 1, proc.stderr
    assert f"[{bad.name}] failed at step 'nginx' (not live): nginx reload failed" in proc.stderr
    assert "reverted" in proc.stderr
    assert (
        record(
            fleet,
            "fault",
            "go-live fails on 1 of 10 hosts after others went live",
            "the live hosts switched back; stage on its old release",
            sentinels=False,
        )
        == []
    )
    assert {fleet.current(h.name) for h in fleet.hosts} == {f"releases/{first}"}
    assert all(fleet.served(h.name) == "<?php echo 'version 1';\n" for h in fleet.hosts)
    assert not any(fleet.locked(h.name) for h in fleet.hosts)
    assert re.search(rf"^{fleet.hosts[0].name}\s+\S+\s+reverted to {first}", proc.stdout, re.M)


def test_allow_partial_keeps_the_live_hosts_and_exits_3(fleet):
    first = re.search(r"deployed (\S+) to", fleet.ok("test", "deploy").stdout).group(1)
    bad = fleet.hosts[7]
    _break_go_live(fleet, bad)
    write_app(fleet.app, "2")
    proc = fleet.fab("test", "deploy", "--allow-partial")
    assert proc.returncode == 3, proc.stderr
    assert fleet.current(bad.name) == f"releases/{first}"
    others = {fleet.current(h.name) for h in fleet.hosts if h is not bad}
    assert len(others) == 1 and others != {f"releases/{first}"}
    assert not any(fleet.locked(h.name) for h in fleet.hosts)


def test_switch_points_a_subset_at_an_uploaded_release(fleet):
    a = re.search(r"deployed (\S+) to", fleet.ok("test", "deploy").stdout).group(1)
    write_app(fleet.app, "2")
    b = re.search(r"deployed (\S+) to", fleet.ok("test", "deploy").stdout).group(1)
    subset = [h.name for h in fleet.hosts[:5]]
    proc = fleet.ok("test", "switch", "--release", a, "--hosts", ",".join(subset))
    assert f"switched {', '.join(subset)} to {a}" in proc.stdout
    for h in fleet.hosts:
        assert fleet.current(h.name) == f"releases/{a if h.name in subset else b}"
    # A switch is not a rollback: the release left is still complete, not "rolled back".
    states = {e["release"]: e["state"] for e in fleet.log(subset[0])}
    assert states[b] == "live"
    out = fleet.fab("test", "switch", "--release", a, "--hosts", "nope")
    assert out.returncode == 2 and "nope not in stage test" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_prepare_cleans_up_and_exits_130(fleet, sig):
    fleet.ok("test", "deploy")
    before = state(fleet)
    # A slow nginx test stands in for a long build: the deploy sits in prepare.
    fleet.config["nginx"] = {"test": "sleep 3", "reload": "true", "pid_file": "/nonexistent"}
    write_app(fleet.app, "2")
    proc = fleet.start("test", "deploy")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until every host holds our lock
        if all(fleet.locked(h.name) for h in fleet.hosts):
            break
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    assert "Traceback" not in err
    assert (
        record(
            fleet,
            "interrupt",
            f"{signal.Signals(sig).name} during prepare",
            "unactivated release removed, locks released, exit 130",
            sentinels=False,
        )
        == []
    )
    assert state(fleet) == before


def test_rolling_batches_with_a_health_check_between_them(fleet):
    proc = fleet.ok("test", "deploy", "--batch", "4")
    assert "batch 1/3 live: node1, node2, node3, node4" in proc.stdout
    assert "batch 3/3 live: node9, node10" in proc.stdout
    assert len({fleet.current(h.name) for h in fleet.hosts}) == 1


def test_a_failing_canary_stops_the_deploy_and_nothing_stays_live(fleet, tmp_path):
    first = re.search(r"deployed (\S+) to", fleet.ok("test", "deploy").stdout).group(1)
    # The canary (node1) answers its health check wrong; nothing else may go live.
    fleet.overrides = {"node1": {"healthcheck": {"url": "http://127.0.0.1:9/"}}}
    write_app(fleet.app, "2")
    proc = fleet.fab("test", "deploy", "--canary", "1")
    assert proc.returncode == 1, proc.stderr
    assert "[node1] failed at step 'health'" in proc.stderr
    assert {fleet.current(h.name) for h in fleet.hosts} == {f"releases/{first}"}
    assert not any(fleet.locked(h.name) for h in fleet.hosts)
    # The hosts never reached do not keep the unactivated release.
    assert all(len(fleet.releases(h.name)) == 1 for h in fleet.hosts[1:])
    out = fleet.fab("test", "deploy", "--batch", "0")
    assert out.returncode == 2 and "--batch must be" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_go_live_finishes_the_switch_everywhere_then_exits_130(fleet, sig):
    fleet.ok("test", "deploy")
    # A slow reload keeps every host in go-live long enough to interrupt it there.
    fleet.config["nginx"] = {"test": "true", "reload": "sleep 2", "pid_file": "/nonexistent"}
    write_app(fleet.app, "2")
    proc = fleet.start("test", "deploy")
    deadline = time.monotonic() + 60
    new = None
    while time.monotonic() < deadline and new is None:  # wait for the first host to switch
        for h in fleet.hosts:
            log = fleet.log(h.name)
            if (
                log
                and log[-1]["state"] == "complete"
                and fleet.current(h.name) != (f"releases/{log[0]['release']}")
            ):
                new = fleet.current(h.name)
                break
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted during go-live" in err
    assert (
        record(
            fleet,
            "interrupt",
            f"{signal.Signals(sig).name} during go-live",
            "the switch finished on all 10 hosts, locks released, exit 130",
            sentinels=False,
        )
        == []
    )
    assert new is not None
    assert {fleet.current(h.name) for h in fleet.hosts} == {new}
    assert all(fleet.served(h.name) == "<?php echo 'version 2';\n" for h in fleet.hosts)
    assert not any(fleet.locked(h.name) for h in fleet.hosts)


@contextlib.contextmanager
def in_process(tmp_path, app, count: int, prefix: str):  # type: ignore[no-untyped-def]
    """`count` kit hosts in a stage named `prefix` whose source is `app`, for runs made
    through the library in this process: (hosts, stage, options)."""
    from atomicdeploy import inventory, pipeline
    from atomicdeploy.testing import write_inventory

    with LocalHosts(tmp_path / "kit", count, prefix=prefix) as hosts:
        inv = write_inventory(
            tmp_path / "inventory.yml",
            hosts,
            stage=prefix,
            source=str(app),
            known_hosts=tmp_path / "known_hosts",
        )
        yield hosts, inventory.load(inv).stage(prefix), pipeline.Options(stage=prefix)


def test_a_hundred_hosts_deploy_and_roll_back_with_no_descriptor_left_open(tmp_path):
    """The kit starts 100 hosts (a port, a key and an sshd each) and a deploy and a rollback
    reach every one of them in one run each; the controller ends with the file descriptors
    and threads it started with, so a long-lived process that deploys again and again
    (a CI runner, a chat bot) does not run out of them."""
    from atomicdeploy import pipeline
    from atomicdeploy.report import Reporter

    app = tmp_path / "app"
    (app / "public").mkdir(parents=True)
    (app / "public" / "index.php").write_text("<?php echo 'one';\n")
    with in_process(tmp_path, app, 100, "h") as (hosts, stage, opts):
        quiet = Reporter(io.StringIO(), io.StringIO())
        fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
        first = pipeline.deploy(stage, opts, quiet, source=str(app))
        (app / "public" / "index.php").write_text("<?php echo 'two';\n")
        pipeline.deploy(stage, opts, quiet, source=str(app))
        back = pipeline.rollback(stage, opts, quiet)
        assert len(back.release) == 100
        assert set(back.release.values()) == set(first.release.values())
        for h in hosts:
            assert os.readlink(h.deploy_path / "current") == f"releases/{back.release[h.name]}"
        deadline = time.monotonic() + 5  # paramiko's transport threads end after close
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(os.listdir("/proc/self/fd")) == fds
        assert threading.active_count() == threads


def test_a_run_ends_with_its_garbage_collected(tmp_path):
    """paramiko's transports and host key lookups are reference cycles, which only the
    cyclic collector frees, when enough new objects were made: a process that deploys
    again and again (a CI runner, a chat bot) held several runs' connections, buffers and
    ciphers at once, and grew with them. Each run collects its own as it ends, and leaves
    no cycle of its own: with the automatic collector off, nothing is left for it."""
    import collections
    import gc

    from atomicdeploy import pipeline
    from atomicdeploy.report import Reporter

    app = tmp_path / "app"
    write_app(app, "one")
    with in_process(tmp_path, app, 3, "g") as (_, stage, opts):
        gc.collect()
        gc.disable()
        try:
            pipeline.deploy(stage, opts, Reporter(io.StringIO(), io.StringIO()), source=str(app))
            write_app(app, "two")
            pipeline.deploy(stage, opts, Reporter(io.StringIO(), io.StringIO()), source=str(app))
            pipeline.rollback(stage, opts, Reporter(io.StringIO(), io.StringIO()))
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = collections.Counter(
                f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == {}


def test_a_connection_opened_again_is_watched_by_a_keepalive_of_its_own(tmp_path):
    """After a reconnect (Fabric opens a closed connection again on its next command), the
    keepalive must watch the new transport: one left on the old one would never find the
    host dead, and a frozen host would hold the deploy until `command_timeout`."""
    from dataclasses import replace

    from fabric import Config as FabricConfig

    from atomicdeploy.connection import Shared, connect

    app = tmp_path / "app"
    write_app(app, "one")
    with in_process(tmp_path, app, 1, "k") as (_, stage, _opts):
        host = replace(stage[0], server_alive_interval=1, server_alive_count_max=3)
        shared = Shared()
        conn = connect(host, FabricConfig(), shared)
        try:
            conn.run("true", hide=True)
            first = conn.transport
            assert conn.keepalive is not None and conn.keepalive.transport is first
            conn.close()
            assert not conn.keepalive.watching
            conn.run("true", hide=True)
            assert conn.transport is not first
            assert conn.keepalive.transport is conn.transport
            assert conn.keepalive.watching
        finally:
            conn.close()  # the run's clock thread ends with its last connection
