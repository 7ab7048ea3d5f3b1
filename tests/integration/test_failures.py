"""Failures before the switch change nothing that is served, and say where they happened."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from atomicdeploy.testing import LocalHosts

from .conftest import write_app
from .invariants import record

pytestmark = pytest.mark.integration


def snapshot(project):
    return {h.name: (project.current(h.name), project.releases(h.name)) for h in project.hosts}


def test_missing_shared_file_fails_before_the_switch_everywhere(project):
    project.ok("test", "deploy")
    before = snapshot(project)
    project.config["shared_files"] = [".env", "config/secrets.php"]
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert len(lines) == 3
    assert all(
        "at step 'shared' (not live): shared file config/secrets.php is missing" in ln
        for ln in lines
    )
    assert "Traceback" not in proc.stderr
    assert (
        record(
            project,
            "fault",
            "a shared file missing on every host",
            "stopped at step shared everywhere; nothing live",
            sentinels=False,
        )
        == []
    )
    assert snapshot(project) == before
    for h in project.hosts:
        assert project.served(h.name) == "<?php echo 'version 1';\n"
        assert not project.locked(h.name)
        assert project.log(h.name)[-1]["state"] == "failed"


def test_one_host_failing_means_no_host_goes_live(project):
    first_release = project.ok("test", "deploy")
    before = snapshot(project)
    bad = project.hosts[1].name
    # Break one host only: its shared .env disappears and the new release has none.
    (project.deploy_path(bad) / "shared" / ".env").unlink()
    (project.app / ".env").unlink()
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert f"[{bad}] failed at step 'shared'" in proc.stderr
    assert "prepare failed on 1/3 host(s)" in proc.stderr
    assert (
        record(
            project,
            "fault",
            "one host of three fails in prepare",
            "nothing live on any host",
            sentinels=False,
        )
        == []
    )
    assert snapshot(project) == before
    assert "deployed" in first_release.stdout
    for h in project.hosts:
        assert project.served(h.name) == "<?php echo 'version 1';\n"
        assert not project.locked(h.name)


def test_a_held_lock_stops_the_deploy_with_its_owner_and_changes_nothing(project):
    project.ok("test", "deploy")
    before = snapshot(project)
    held = project.deploy_path(project.hosts[2].name) / ".dep" / "deploy.lock"
    held.mkdir()
    (held / "owner").write_text(
        json.dumps({"user": "alice", "host": "laptop", "pid": 42, "time": "2026-11-22T10:15:00Z"})
    )
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert "locked by alice on laptop (pid 42) since 2026-11-22T10:15:00Z" in proc.stderr
    assert "fab test unlock" in proc.stderr
    assert (
        record(
            project,
            "concurrency",
            "a lock held by someone else",
            "stopped naming the holder; their lock kept, ours released",
            sentinels=False,
            lock_expected=True,
        )
        == []
    )
    assert snapshot(project) == before
    # Our own locks on the other hosts were released; alice's lock was not touched.
    assert [project.locked(h.name) for h in project.hosts] == [False, False, True]
    out = project.ok("test", "unlock").stdout
    assert "removed the lock of alice on laptop" in out
    project.ok("test", "deploy")


def test_rollback_takes_the_lock_too(project):
    project.ok("test", "deploy")
    write_app(project.app, "2")
    project.ok("test", "deploy")
    (project.deploy_path(project.hosts[0].name) / ".dep" / "deploy.lock").mkdir()
    proc = project.fab("test", "rollback")
    assert proc.returncode == 1 and "locked by" in proc.stderr
    assert all(project.served(h.name) == "<?php echo 'version 2';\n" for h in project.hosts)


def _two_releases(project):
    project.ok("test", "deploy")
    write_app(project.app, "2")
    project.ok("test", "deploy")
    return snapshot(project), {h.name: project.log(h.name) for h in project.hosts}


def test_a_lock_held_on_the_last_host_stops_a_rollback_before_anything_moves(project):
    """The other hosts were locked, read and armed by then: each is told `no`, renames
    nothing, logs nothing and releases its lock; the holder's lock stays."""
    before, logs = _two_releases(project)
    last = project.hosts[-1].name
    (project.deploy_path(last) / ".dep" / "deploy.lock").mkdir()
    proc = project.fab("test", "rollback")
    assert proc.returncode == 1 and "lock failed on 1/3 host(s): " + last in proc.stderr
    assert snapshot(project) == before
    assert {h.name: project.log(h.name) for h in project.hosts} == logs
    assert [project.locked(h.name) for h in project.hosts] == [False, False, True]
    assert all(project.served(h.name) == "<?php echo 'version 2';\n" for h in project.hosts)


def test_a_host_without_a_target_stops_a_rollback_before_anything_moves(project):
    before, logs = _two_releases(project)
    lone = project.hosts[1].name
    older = project.deploy_path(lone) / "releases" / before[lone][1][0]
    shutil.rmtree(older)
    before[lone] = (before[lone][0], project.releases(lone))
    proc = project.fab("test", "rollback")
    assert proc.returncode == 1
    assert f"rollback failed on 1/3 host(s): {lone}" in proc.stderr
    assert "no complete release older than" in proc.stderr
    assert snapshot(project) == before
    assert {h.name: project.log(h.name) for h in project.hosts} == logs
    assert not any(project.locked(h.name) for h in project.hosts)


def _one_host_back_on_the_first(project):
    """Two releases everywhere, the first host switched back to the older one."""
    before, _ = _two_releases(project)
    older = before[project.hosts[0].name][1][0]
    first = project.hosts[0].name
    project.ok("test", "switch", "--release", older, "--hosts", first)
    return older, snapshot(project), {h.name: project.log(h.name) for h in project.hosts}


def test_a_rollback_to_a_release_one_host_already_runs_moves_the_others_only(project):
    """The host already there waits for the fleet's decision holding its lock, then
    releases it; it logs nothing and renames nothing."""
    older, before, logs = _one_host_back_on_the_first(project)
    first = project.hosts[0].name
    proc = project.ok("test", "rollback", "--release", older)
    assert f"already live: releases/{older}" in proc.stdout
    assert all(project.current(h.name) == f"releases/{older}" for h in project.hosts)
    assert project.log(first) == logs[first]
    assert project.releases(first) == before[first][1]
    assert not any(project.locked(h.name) for h in project.hosts)


def test_a_host_already_on_the_target_is_told_no_when_another_host_is_locked(project):
    older, before, logs = _one_host_back_on_the_first(project)
    last = project.hosts[-1].name
    (project.deploy_path(last) / ".dep" / "deploy.lock").mkdir()
    proc = project.fab("test", "rollback", "--release", older)
    assert proc.returncode == 1 and "lock failed on 1/3 host(s): " + last in proc.stderr
    assert snapshot(project) == before
    assert {h.name: project.log(h.name) for h in project.hosts} == logs
    assert [project.locked(h.name) for h in project.hosts] == [False, False, True]


@pytest.mark.parametrize("action", ["rollback", "deploy"])
def test_a_first_host_whose_connection_cannot_be_made_stops_the_run_at_once(
    project, tmp_path, action
):
    """The other hosts wait for the first host's lock: they must also learn that it never
    began (its ssh_config is unreadable), stop, and leave nothing locked or moved."""
    before, logs = _two_releases(project)
    first = project.hosts[0].name
    project.overrides[first] = {"ssh_config": str(tmp_path / "no-such-ssh-config")}
    proc = project.fab("test", action, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"[{first}]" in proc.stderr and "no-such-ssh-config" in proc.stderr
    assert snapshot(project) == before
    assert {h.name: project.log(h.name) for h in project.hosts} == logs
    assert not any(project.locked(h.name) for h in project.hosts)


def test_current_as_a_real_directory_is_refused(project):
    path = project.deploy_path(project.hosts[0].name)
    (path / "current").mkdir(parents=True)
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert "is a real directory" in proc.stderr
    assert all(project.current(h.name) is None for h in project.hosts[1:])


def test_an_unreachable_host_stops_the_deploy_before_anything_changes(project, tmp_path):
    project.ok("test", "deploy")
    before = snapshot(project)
    with LocalHosts(tmp_path / "extra", 1, prefix="down") as extra:
        project.hosts.append(extra[0])
        project.write_inventory()
    # sshd of "down1" is stopped now.
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert re.search(
        r"\[down1\] failed at step 'setup' \(not live\): cannot connect to"
        r" 127\.0\.0\.1:\d+: connection refused",
        proc.stderr,
    )
    project.hosts.pop()
    assert (
        record(
            project,
            "fault",
            "a host unreachable (sshd stopped)",
            "stopped at setup naming the host; nothing changed",
            sentinels=False,
        )
        == []
    )
    assert snapshot(project) == before
    assert not any(project.locked(h.name) for h in project.hosts)


def test_source_missing_is_a_usage_error_and_contacts_no_host(project):
    project.config["source"] = "build"
    proc = project.fab("test", "deploy")
    assert proc.returncode == 2
    assert "source: local directory 'build' does not exist" in proc.stderr
    assert all(not project.deploy_path(h.name).exists() for h in project.hosts)
