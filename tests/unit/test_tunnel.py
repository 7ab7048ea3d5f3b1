"""rsync over an existing connection: the relay script and the controller's pumps.

No network: a stand-in transport runs the host's command (`rsync --server ...`) as a
local process, so real rsync talks to real rsync through `tunnel.run_rsync` exactly
as it does over SSH on a real host (tests/integration/test_upload.py does that).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest

from atomicdeploy import shell, tunnel
from tests.local_transport import LocalTransport


def upload(src: Path, dst: Path, transport, **kw) -> subprocess.CompletedProcess:
    argv = shell.rsync_argv(str(src), "web1", str(dst), ssh=shell.tunnel_rsh(), **kw)
    return tunnel.run_rsync(transport, argv, timeout=60)


def tree(root: Path) -> dict[str, tuple[str, bytes | str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", oct(p.stat().st_mode & 0o7777))
        else:
            out[rel] = (oct(p.stat().st_mode & 0o7777), p.read_bytes())
    return out


HOSTILE = [
    "a b",
    "it's",
    'say "hi"',
    "$(touch pwned)",
    "`id`",
    "-rf",
    "tab\there",
    "new\nline",
    "ünï",
    "back\\slash",
    "semi;colon",
    "*",
    "--delete",
]


def test_a_tree_with_hostile_names_arrives_exactly(tmp_path):
    src = tmp_path / "src"
    for name in HOSTILE:
        (src / name).mkdir(parents=True)
        (src / name / name).write_text(f"content of {name}\n")
    (src / "exe").write_text("#!/bin/sh\n")
    (src / "exe").chmod(0o751)
    (src / "link").symlink_to("exe")
    dst = tmp_path / "host dir's" / "release"
    dst.mkdir(parents=True)
    transport = LocalTransport()
    proc = upload(src, dst, transport)
    assert proc.returncode == 0, proc.stderr
    assert tree(dst) == tree(src)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    # The host ran rsync's own server command, quoted, on one channel.
    [channel] = transport.channels
    assert shlex.split(channel.command)[:2] == ["rsync", "--server"]
    assert "Number of regular files transferred" in proc.stdout  # --stats come back as usual


def test_second_upload_sends_only_what_changed_and_deletes_what_went(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    for i in range(50):
        (src / "d" / f"f{i}").write_text(f"{i}\n")
    dst.mkdir()
    assert upload(src, dst, LocalTransport()).returncode == 0
    (src / "d" / "f1").write_text("changed, longer\n")
    (src / "d" / "f2").unlink()
    later = (src / "d" / "f1").stat().st_mtime + 10
    os.utime(src / "d" / "f1", (later, later))
    proc = upload(src, dst, LocalTransport())
    assert proc.returncode == 0, proc.stderr
    assert "Number of regular files transferred: 1" in proc.stdout
    assert tree(dst) == tree(src)


def test_a_big_file_crosses_both_ways_without_deadlock(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "blob").write_bytes(os.urandom(8 << 20))
    assert upload(src, dst, LocalTransport()).returncode == 0
    # A changed big file makes the host send checksums back while we send data.
    data = bytearray((src / "blob").read_bytes())
    data[4 << 20] ^= 0xFF
    (src / "blob").write_bytes(bytes(data))
    later = (src / "blob").stat().st_mtime + 10  # same size: rsync's quick check needs a new time
    os.utime(src / "blob", (later, later))
    proc = upload(src, dst, LocalTransport())
    assert proc.returncode == 0, proc.stderr
    assert (dst / "blob").read_bytes() == bytes(data)


def test_a_channel_that_cannot_be_opened_is_a_tunnel_error_not_a_hang(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    start = time.monotonic()
    with pytest.raises(tunnel.TunnelError, match="gone"):
        upload(src, tmp_path / "dst", LocalTransport(fail=paramiko.SSHException("gone")))
    assert time.monotonic() - start < 30  # bounded: rsync was stopped, not waited for


def test_a_host_side_that_dies_mid_transfer_fails_rsync_cleanly(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "blob").write_bytes(os.urandom(32 << 20))
    transport = LocalTransport()
    result: dict = {}

    def run() -> None:
        result["proc"] = upload(src, dst, transport)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 20
    while not transport.channels or transport.channels[0].proc is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    transport.channels[0].kill()  # the host's rsync dies (OOM, reboot)
    worker.join(60)
    assert not worker.is_alive()
    proc = result["proc"]
    assert proc.returncode != 0
    assert "rsync" in proc.stderr


def test_a_host_side_error_reaches_the_caller(tmp_path):
    """The host's rsync refuses (here: its destination cannot be made): rsync says why."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    proc = upload(src, blocker / "sub", LocalTransport())
    assert proc.returncode != 0
    assert "Not a directory" in proc.stderr or "mkdir" in proc.stderr


@pytest.mark.parametrize("fds", [(3, 4), (4, 3), (3, 9), (9, 3), (12, 13), (5, 6), (8, 9)])
def test_relay_keeps_stdin_on_a_digit_its_pipes_do_not_use(fds):
    script = shell.tunnel_script(*fds)
    saved = int(script.split("exec ", 2)[1][0])
    assert saved not in fds and 3 <= saved <= 9
    assert f"/dev/fd/{fds[0]}" in script and f"/dev/fd/{fds[1]}" in script


def test_relay_names_the_command_then_carries_bytes_and_exits_when_the_host_ends(tmp_path):
    """The relay, run as rsync runs it, with a plain sh and pipes instead of rsync."""
    from_host_r, from_host_w = os.pipe()
    to_host_r, to_host_w = os.pipe()
    env = {**os.environ, shell.TUNNEL_ENV: shell.tunnel_script(from_host_r, to_host_w)}
    argv = [*shell.tunnel_rsh(), "web1", "rsync", "--server", "a b", "-e.Lsfx"]
    relay = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        pass_fds=(from_host_r, to_host_w),
    )
    os.close(from_host_r)
    os.close(to_host_w)
    header = b""
    while header.count(b"\0") < 5:
        header += os.read(to_host_r, 100)
    assert header == b"4\0rsync\0--server\0a b\0-e.Lsfx\0"
    relay.stdin.write(b"to the host")
    relay.stdin.flush()
    assert os.read(to_host_r, 100) == b"to the host"
    os.write(from_host_w, b"from the host")
    assert relay.stdout.read(13) == b"from the host"
    os.close(from_host_w)  # the host's side ended: the relay ends too, with status 0
    assert relay.wait(timeout=10) == 0
    os.close(to_host_r)


def test_rsh_is_one_argument_rsync_can_split_without_backslashes():
    rsh = shell.tunnel_rsh()
    joined = shlex.join(rsh)
    assert "\\" not in joined  # rsync's --rsh parser takes quotes, not backslashes
    assert shlex.split(joined) == rsh
