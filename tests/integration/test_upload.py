"""The upload on real hosts: over the Fabric connection, through the host's upload cache."""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest

from atomicdeploy import inventory, remote
from atomicdeploy.report import Reporter
from atomicdeploy.runner import Fleet

from .conftest import write_app

pytestmark = pytest.mark.integration

SHARED = {"storage", ".env"}  # links to shared/, made by the deploy, not uploaded


def release_of(proc) -> str:
    return re.search(r"deployed (\S+) to", proc.stdout).group(1)


def source_tree(root: Path, skip: set[str] = frozenset()) -> dict[str, tuple]:
    """Path -> (kind, mode, content) for everything under root, links not followed."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.split("/")[0] in skip:
            continue
        st = p.lstat()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", oct(st.st_mode & 0o7777))
        else:
            out[rel] = ("file", oct(st.st_mode & 0o7777), p.read_bytes())
    return out


def test_the_upload_uses_no_second_ssh_login(project, tmp_path):
    """rsync rides on the Fabric connection: an `ssh` on PATH is never started."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "ssh-was-run"
    (bindir / "ssh").write_text(f"#!/bin/sh\ntouch {marker}\nexit 255\n")
    (bindir / "ssh").chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    project.ok("test", "deploy", env=env)
    write_app(project.app, "2")
    proc = project.ok("test", "deploy", env=env)
    assert not marker.exists()
    # index.php, Email.php and seed.log: write_app rewrites all three
    assert re.findall(r"uploaded (\d+) changed file", proc.stdout) == ["3", "3", "3"]
    for h in project.hosts:
        assert project.served(h.name) == "<?php echo 'version 2';\n"


def test_each_release_is_the_source_exactly_and_shares_no_inode(project):
    """Changed, added, deleted, mode-only and link changes all arrive; the release's files
    are its own (a build step editing one in place changes nothing live or cached)."""
    (project.app / "bin").mkdir()
    (project.app / "bin" / "console").write_text("#!/bin/sh\necho console\n")
    (project.app / "bin" / "console").chmod(0o644)
    (project.app / "gone.php").write_text("<?php // to be deleted\n")
    (project.app / "public" / "latest").symlink_to("index.php")
    first = release_of(project.ok("test", "deploy"))
    write_app(project.app, "2")
    (project.app / "gone.php").unlink()
    (project.app / "added.php").write_text("<?php // new\n")
    mtime = (project.app / "bin" / "console").stat().st_mtime
    (project.app / "bin" / "console").chmod(0o755)  # mode only: same size and time
    os.utime(project.app / "bin" / "console", (mtime, mtime))
    (project.app / "public" / "latest").unlink()
    (project.app / "public" / "latest").symlink_to("../src/Email.php")
    second = release_of(project.ok("test", "deploy"))
    want = source_tree(project.app, skip=SHARED)
    for h in project.hosts:
        path = project.deploy_path(h.name)
        new, old = path / "releases" / second, path / "releases" / first
        assert source_tree(new, skip=SHARED | {"REVISION"}) == want
        assert oct((old / "bin" / "console").stat().st_mode & 0o777) == "0o644"  # untouched
        cache = path / ".dep" / "upload"
        for rel, entry in want.items():
            if entry[0] != "file":
                continue
            inode = (new / rel).stat().st_ino
            assert inode != (cache / rel).stat().st_ino, rel
            if (old / rel).exists():
                assert inode != (old / rel).stat().st_ino, rel


def test_a_lost_or_damaged_upload_cache_is_rebuilt_without_resending(project):
    write_app(project.app, "1", extra_files=300)
    project.ok("test", "deploy")
    web1, web2, web3 = (project.deploy_path(h.name) / ".dep" / "upload" for h in project.hosts)
    shutil.rmtree(web1)  # someone cleaned up .dep
    (web2 / "junk.php").write_text("<?php // not in the source\n")  # a stray file
    (web2 / "src" / "Email.php").unlink()
    (web3 / "src" / "lib").rename(web3 / "moved")  # a half-finished earlier upload
    (project.app / "public" / "index.php").write_text("<?php echo 'version 1.1';\n")
    proc = project.ok("test", "deploy")
    sent = dict(re.findall(r"\[(\w+)\] uploaded (\d+) changed file", proc.stdout))
    # Unchanged files come from the live release on the host, never over the network.
    assert int(sent["web1"]) <= 2 and int(sent["web2"]) <= 2, proc.stdout
    want = source_tree(project.app, skip=SHARED)
    for h in project.hosts:
        release = project.deploy_path(h.name) / "current"
        assert source_tree(release.resolve(), skip=SHARED | {"REVISION"}) == want, h.name
        assert project.served(h.name) == "<?php echo 'version 1.1';\n"


def test_excluded_paths_are_never_in_a_release(project):
    project.config["exclude"] = [".git", "*.log.tmp", "node_modules/"]
    (project.app / ".git").mkdir()
    (project.app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project.app / "node_modules" / "x").mkdir(parents=True)
    (project.app / "debug.log.tmp").write_text("x")
    project.ok("test", "deploy")
    for h in project.hosts:
        current = (project.deploy_path(h.name) / "current").resolve()
        cache = project.deploy_path(h.name) / ".dep" / "upload"
        for where in (current, cache):
            assert not (where / ".git").exists() and not (where / "node_modules").exists()
            assert not (where / "debug.log.tmp").exists()


def test_connections_send_small_packets_at_once(project):
    """TCP_NODELAY: without it each command waited ~40 ms for a delayed ACK; an armed
    switch turns it off for its one command only (`Remote.nagle`)."""
    path = project.write_inventory()
    stage = inventory.load(path).stage("test")
    fleet = Fleet(stage, Reporter())
    try:
        r = fleet.remote(stage[0].name)
        r.run("true", "probe", read_only=True)
        sock = r.conn.transport.sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert isinstance(r.conn, remote.Connection)
        with r.nagle():
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            r.run("true", "probe", read_only=True)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert isinstance(sock, remote._QuickAckSocket)
    finally:
        fleet.close()


def test_quick_ack_is_set_again_after_every_read():
    """Linux leaves quick-ACK mode on its own; each read of our SSH socket re-enters it, so
    sshd's confirmation of the first channel is not held 40 ms behind its hostkeys notice."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        sock = remote._QuickAckSocket(fileno=client.detach())
        peer, _ = server.accept()
        with sock, peer:
            for _ in range(3):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 0
                peer.sendall(b"x")
                assert sock.recv(1) == b"x"
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
