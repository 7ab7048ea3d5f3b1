"""Faults on real sshd hosts: a command that hangs, SSH killed mid-upload, a full
disk, interrupts after go-live. After each, on every host: `current` on a complete release,
no lock left, shared/ intact, and the next deploy succeeds. Each is counted in the report."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import FAB, write_app
from .invariants import plant_sentinels, record, violations

pytestmark = pytest.mark.integration


def check(project, area: str, what: str, outcome: str, **kw) -> None:
    """Record the invariants after a fault (counted even when they fail), then assert them."""
    assert record(project, area, what, outcome, **kw) == []


def next_deploy_works(project) -> None:
    write_app(project.app, "after")
    project.ok("test", "deploy")
    assert all(project.served(h.name) == "<?php echo 'version after';\n" for h in project.hosts)
    assert violations(project) == []


def pkill(pattern: str) -> None:
    subprocess.run(["pkill", "-f", pattern], check=False)


def test_a_command_that_never_returns_is_ended_by_command_timeout(project):
    project.ok("test", "deploy")
    plant_sentinels(project)
    before = {h.name: project.current(h.name) for h in project.hosts}
    project.config["command_timeout"] = 3
    project.overrides = {"web2": {"hooks": {"before_switch": ["sleep 613"]}}}
    write_app(project.app, "2")
    start = time.monotonic()
    proc = project.fab("test", "deploy")
    took = time.monotonic() - start
    pkill("sleep 613")
    assert proc.returncode == 1
    # The hook that hung is named, not the build step that ran it.
    hung = "[web2] failed at step 'hook before_switch' (not live): no answer within 3 s"
    assert hung in proc.stderr
    assert took < 60  # not the 613 s the command wanted
    assert {h.name: project.current(h.name) for h in project.hosts} == before
    check(
        project,
        "fault",
        "a remote command hangs (command_timeout 3 s)",
        "stopped after 3 s with one line; nothing went live",
    )
    project.overrides = {}
    next_deploy_works(project)


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def upload_session(sshd_pid: int) -> int | None:
    """The sshd session (a child of the host's sshd) whose descendant is `rsync --server`.

    rsync's `-s` keeps paths off the command line, so the host is found by process tree.
    """
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if not (argv[0].endswith(b"rsync") and b"--server" in argv):
                continue
            pid = int(d.name)
            while pid > 1:
                up = parent(pid)
                if up == sshd_pid:
                    return pid
                pid = up
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_ssh_killed_in_the_middle_of_an_upload(project):
    project.ok("test", "deploy")
    plant_sentinels(project)
    before = {h.name: project.current(h.name) for h in project.hosts}
    big = project.app / "public" / "assets.bin"
    with big.open("wb") as f:  # incompressible, so the upload takes a while
        for _ in range(96):
            f.write(os.urandom(1 << 20))
    write_app(project.app, "2")
    proc = project.start("test", "deploy")
    web2 = next(h for h in project.hosts if h.name == "web2")
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        session = upload_session(web2.pid)
        if session:
            time.sleep(0.1)  # let some data flow
            os.kill(session, signal.SIGKILL)
            killed = session
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    assert killed, "the upload to web2 was never seen running"
    assert proc.returncode == 1, (out, err)
    assert "[web2] failed at step 'upload' (not live): rsync failed" in err
    assert {h.name: project.current(h.name) for h in project.hosts} == before
    assert all(len(project.releases(h.name)) == 1 for h in project.hosts)
    check(
        project,
        "fault",
        "SSH session killed during the upload",
        "upload failed on that host; new release removed everywhere",
    )
    big.unlink()
    next_deploy_works(project)


def failing_rsync(bindir: Path, victim: str) -> dict:
    """A stand-in for a full disk where no small filesystem can be mounted: an rsync
    that fails like a full disk for one host's deploy path and is real for the others."""
    real = shutil.which("rsync")
    bindir.mkdir()
    (bindir / "rsync").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *{victim}*) echo "rsync: write failed on \\"x\\": No space left on'
        ' device (28)" >&2; exit 11;; esac\n'
        f'exec {real} "$@"\n'
    )
    (bindir / "rsync").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_a_full_disk_during_the_upload(project, tmp_path):
    target = project.deploy_path("web2")
    target.mkdir(parents=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        project.ok("test", "deploy")
        plant_sentinels(project)
        before = {h.name: project.current(h.name) for h in project.hosts}
        env = {}
        if mounted:  # a real 4 MB filesystem: 6 MB do not fit
            with (project.app / "public" / "big.bin").open("wb") as f:
                f.write(os.urandom(6 << 20))
        else:
            env = failing_rsync(tmp_path / "bin", str(target))
        write_app(project.app, "2")
        proc = project.fab("test", "deploy", env=env)
        assert proc.returncode == 1, proc.stderr
        assert "[web2] failed at step 'upload' (not live)" in proc.stderr
        # rsync names ENOSPC, unless the receiver died before it could: then its exit 11.
        assert (
            "No space left on device" in proc.stderr
            or "error in file I/O on the host (disk full?) (exit 11)" in proc.stderr
        )
        assert {h.name: project.current(h.name) for h in project.hosts} == before
        how = "a 4 MB tmpfs" if mounted else "simulated by an rsync that fails with ENOSPC"
        check(
            project,
            "fault",
            f"disk full during the upload ({how})",
            "upload failed; the new release removed, freeing the space; nothing live",
        )
        (project.app / "public" / "big.bin").unlink(missing_ok=True)
        next_deploy_works(project)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_after_go_live_keeps_the_release_live_and_releases_the_locks(project, sig):
    project.ok("test", "deploy")
    plant_sentinels(project)
    project.config["hooks"] = {"after_switch": ["sleep 2"]}
    write_app(project.app, "2")
    proc = project.start("test", "deploy")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every host live on version 2: the finish phase
        if all(project.served(h.name) == "<?php echo 'version 2';\n" for h in project.hosts):
            break
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert all(project.served(h.name) == "<?php echo 'version 2';\n" for h in project.hosts)
    check(
        project,
        "interrupt",
        f"{signal.Signals(sig).name} after go-live (finish phase)",
        "the release stays live everywhere, locks released, exit 130",
    )
    project.config["hooks"] = {}
    next_deploy_works(project)


class Tarpit:
    """A host that accepts TCP connections and never says anything (a hung sshd)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list = []
        self._stop = False

        def accept() -> None:
            while not self._stop:
                try:
                    self.conns.append(self.sock.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def tarpit(project):
    t = Tarpit()
    key = project.hosts[0].key
    project.overrides["hung"] = {
        "hostname": "127.0.0.1",
        "port": t.port,
        "remote_user": "nobody",
        "identity_file": str(key),
        "labels": {"stage": "test"},
        "deploy_path": "/nonexistent/hung",
    }
    project.config["connect_timeout"] = 3
    yield t
    t.close()


def _with_hung_host(project):
    """The inventory with the tarpit host second in the stage, after web1."""
    import yaml

    inv = project.write_inventory()
    data = yaml.safe_load(inv.read_text())
    hosts = data["hosts"]
    order = ["web1", "hung", *[n for n in hosts if n not in ("web1", "hung")]]
    data["hosts"] = {n: {**hosts.get(n, {}), **project.overrides.get(n, {})} for n in order}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_host_that_accepts_tcp_but_never_speaks_ssh_stops_the_deploy(project, tarpit):
    project.ok("test", "deploy")
    plant_sentinels(project)
    before = {h.name: project.current(h.name) for h in project.hosts}
    write_app(project.app, "2")
    _with_hung_host(project)
    start = time.monotonic()
    proc = subprocess.run(
        [*FAB, "test", "deploy"],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "[hung] failed at step 'setup'" in proc.stderr
    assert time.monotonic() - start < 30
    assert {h.name: project.current(h.name) for h in project.hosts} == before
    check(
        project,
        "fault",
        "a host accepts TCP but never answers SSH (hung sshd)",
        "stopped after connect_timeout naming the host; nothing changed",
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_locking_releases_every_lock_taken(project, tarpit, sig):
    project.ok("test", "deploy")
    plant_sentinels(project)
    before = {h.name: project.current(h.name) for h in project.hosts}
    write_app(project.app, "2")
    _with_hung_host(project)
    proc = subprocess.Popen(  # not project.start: it would write the usual inventory again
        [*FAB, "test", "deploy"],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not project.locked("web1"):
        time.sleep(0.01)  # web1 is locked alone first; the others wait on the hung host
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted while locking" in err and "Traceback" not in err
    assert {h.name: project.current(h.name) for h in project.hosts} == before
    check(
        project,
        "interrupt",
        f"{signal.Signals(sig).name} while locking the stage",
        "every lock taken released; nothing changed; exit 130",
    )
    next_deploy_works(project)
