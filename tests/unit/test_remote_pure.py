"""remote: the pure helpers that read rsync's and a command's output."""

from __future__ import annotations

import subprocess
import threading

import pytest

from atomicdeploy.remote import RsyncStats, last_line, parse_rsync_stats, rsync_reason

STATS = """\
sending incremental file list
public/index.php

Number of files: 12,345 (reg: 10,234, dir: 2,111)
Number of created files: 1,002 (reg: 1,000, dir: 2)
Number of deleted files: 0
Number of regular files transferred: 1,234
Total file size: 98,765,432 bytes
Total transferred file size: 1,234,567 bytes
Literal data: 1,234,567 bytes
Matched data: 0 bytes
File list size: 262,140
File list generation time: 0.005 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 1,567,890
Total bytes received: 24,680

sent 1,567,890 bytes  received 24,680 bytes  3,185,140.00 bytes/sec
total size is 98,765,432  speedup is 62.02
"""


def test_parse_rsync_stats_with_thousands_separators():
    assert parse_rsync_stats(STATS) == RsyncStats(
        files_transferred=1234, bytes_sent=1567890, files_total=12345
    )


def test_parse_rsync_stats_small_numbers_and_nothing_changed():
    text = STATS.replace("1,234\n", "0\n").replace("12,345 (", "3 (")
    stats = parse_rsync_stats(text)
    assert (stats.files_transferred, stats.files_total) == (0, 3)


def test_parse_rsync_stats_missing_lines_are_zero():
    assert parse_rsync_stats("") == RsyncStats(0, 0, 0)
    assert parse_rsync_stats("sent 10 bytes  received 20 bytes\n") == RsyncStats(0, 0, 0)


def test_parse_rsync_stats_only_reads_whole_lines():
    """`Number of files:` must not be confused with `Number of created files:` and the like."""
    text = "Number of created files: 7\nNumber of deleted files: 9\nNumber of files: 4\n"
    assert parse_rsync_stats(text).files_total == 4
    assert parse_rsync_stats("  Total bytes sent: 5\n").bytes_sent == 0


def test_parse_rsync_stats_of_the_local_rsync(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(1100):
        (src / f"f{i}.php").write_text(f"<?php // {i}\n")
    out = subprocess.run(
        ["rsync", "--archive", "--stats", "--", f"{src}/", f"{dst}/"],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    stats = parse_rsync_stats(out)
    assert stats.files_transferred == 1100
    assert stats.files_total == 1101  # the files and the top directory
    assert stats.bytes_sent > 1000


# --- rsync_reason -----------------------------------------------------------------------------


def test_rsync_reason_first_meaningful_line():
    stderr = (
        'rsync: [Receiver] mkdir "/srv/app/releases/R2" failed: Permission denied (13)\n'
        "rsync error: error in file IO (code 11) at main.c(791) [Receiver=3.2.7]\n"
    )
    assert rsync_reason(stderr) == (
        'rsync: [Receiver] mkdir "/srv/app/releases/R2" failed: Permission denied (13)'
    )


def test_rsync_reason_skips_connection_noise():
    stderr = (
        "\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "  ssh: connect to host web1 port 22: Connection refused  \n"
        "rsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]\n"
    )
    assert rsync_reason(stderr) == "ssh: connect to host web1 port 22: Connection refused"


def test_rsync_reason_falls_back_to_the_last_line():
    stderr = (
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "rsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]\n"
    )
    assert rsync_reason(stderr) == (
        "rsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]"
    )
    assert rsync_reason("") == "no output"
    assert rsync_reason(" \n\t\n") == "no output"


# --- last_line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", ""),
        (None, ""),
        ("\n \n\t\n", ""),
        ("only", "only"),
        ("first\nsecond\n", "second"),
        ("first\n  second  \n\n   \n", "second"),
        ("a\r\nb\r\n", "b"),
    ],
)
def test_last_line(text, line):
    assert last_line(text) == line


def test_rsync_reason_falls_back_to_what_the_exit_code_means():
    from atomicdeploy.remote import rsync_reason

    assert rsync_reason("", 11) == "error in file I/O on the host (disk full?)"
    assert rsync_reason("", 99) == "no output"
    assert rsync_reason("rsync: write failed: No space left on device (28)\n", 11) == (
        "rsync: write failed: No space left on device (28)"
    )


def test_a_commands_output_is_kept_as_its_last_mebibyte_only():
    """A hook that prints without end must not fill the controller's memory; the markers the
    callers look for are at the end, so the tail is what is kept."""
    from fabric import Connection

    from atomicdeploy import remote

    runner = remote._Runner(context=Connection("localhost"))
    runner.encoding = "utf-8"
    chunks = iter([b"x" * 1000] * 3000 + [b"@@ad:step=hook last\n", b""])
    buffer: list[str] = []
    runner._handle_output(buffer, True, None, lambda n: next(chunks))
    kept = "".join(buffer)
    assert len(kept) <= remote.OUTPUT_CAP
    assert len(kept) > remote.OUTPUT_CAP - 1000
    assert kept.endswith("x@@ad:step=hook last\n")


class FakeChannel:
    """What a runner uses of a paramiko channel: the two receive buffers, their ends, and
    the exit status, ready once the channel is closed or the status arrived."""

    def __init__(self) -> None:
        from paramiko.buffered_pipe import BufferedPipe

        self.in_buffer, self.in_stderr_buffer = BufferedPipe(), BufferedPipe()
        self.closed = self.eof_received = False
        self.status_event = threading.Event()

    def recv_ready(self) -> bool:
        return self.in_buffer.read_ready()

    def recv_stderr_ready(self) -> bool:
        return self.in_stderr_buffer.read_ready()

    def recv(self, n: int) -> bytes:
        return self.in_buffer.read(n)

    def recv_stderr(self, n: int) -> bytes:
        return self.in_stderr_buffer.read(n)

    def exit_status_ready(self) -> bool:
        return self.closed or self.status_event.is_set()

    def close(self) -> None:
        self.closed = True
        self.status_event.set()


def test_a_commands_timeout_is_kept_without_a_thread_of_its_own():
    """Invoke starts a timer thread per command; ours waits on the channel with a
    deadline, closes the channel when it passes, and reports the timeout."""
    import threading
    import time

    from fabric import Connection

    from atomicdeploy import remote

    runner = remote._Runner(context=Connection("localhost"))
    runner.channel, runner.threads = FakeChannel(), {}
    threads = threading.active_count()
    runner.start_timer(0.2)
    assert threading.active_count() == threads
    assert not runner.timed_out
    started = time.monotonic()
    runner.wait()
    assert 0.2 <= time.monotonic() - started < 2
    assert runner.channel.closed and runner.timed_out

    quick = remote._Runner(context=Connection("localhost"))
    quick.channel, quick.threads = FakeChannel(), {}
    quick.start_timer(None)
    quick.channel.closed = True  # the command ended on its own
    quick.wait()
    assert not quick.timed_out


def test_the_commands_thread_reads_both_streams_whole_and_ends_with_them():
    """stdout and stderr fed in random turns and sizes, sometimes while the reader is
    busy, sometimes while it sleeps: each arrives whole and in order, and the reader
    ends at the end of the command, not before. No thread is started for it: `wait`,
    in the command's own thread, reads; with a hook's watchers, one reader thread does."""
    import random
    import threading
    import time
    import weakref

    from fabric import Connection

    from atomicdeploy import remote

    rng = random.Random(7)
    for round_ in range(20):
        chan = FakeChannel()
        runner = remote._Runner(context=Connection("localhost"))
        runner.channel, runner.encoding = chan, "utf-8"
        watchers = [] if round_ % 4 else [invoke_watcher()]
        runner._setup("true", {"hide": True, "in_stream": False, "watchers": watchers})
        runner.threads, stdout, stderr = runner.create_io_threads()
        assert len(runner.threads) == (1 if watchers else 0)
        for thread in runner.threads.values():
            thread.start()
        waiter = threading.Thread(target=runner.wait)
        waiter.start()
        sent = {"out": [], "err": []}
        for i in range(rng.randint(0, 40)):
            which = rng.choice(["out", "err"])
            chunk = f"{which}{i}:" + "x" * rng.randint(0, 20000)  # 40 of them < OUTPUT_CAP
            sent[which].append(chunk)
            pipe = chan.in_buffer if which == "out" else chan.in_stderr_buffer
            pipe.feed(chunk.encode())
            if rng.random() < 0.3:
                time.sleep(0.002)
        time.sleep(0.01)
        assert waiter.is_alive()  # no end yet: still reading
        chan.eof_received = True
        chan.in_buffer.close()
        chan.in_stderr_buffer.close()
        chan.status_event.set()
        waiter.join(5)
        assert not waiter.is_alive()
        for thread in runner.threads.values():
            thread.join(5)
            assert not thread.is_alive()
        assert "".join(stdout) == "".join(sent["out"])
        assert "".join(stderr) == "".join(sent["err"])
        if not watchers:  # no cycle left: the runner goes with its last reference
            gone = weakref.ref(runner)
            del runner
            assert gone() is None


def test_a_command_that_prints_without_end_still_times_out():
    """Its output is read in bounded passes, with the deadline looked at between them: a
    command that prints faster than it is read ends at its timeout all the same."""
    import threading
    import time

    from fabric import Connection

    from atomicdeploy import remote

    class Flood(FakeChannel):
        def recv_ready(self) -> bool:
            return not self.closed

        def recv_stderr_ready(self) -> bool:
            return False

        def recv(self, n: int) -> bytes:
            return b"y\n" * (n // 2)

    runner = remote._Runner(context=Connection("localhost"))
    runner.channel, runner.encoding = Flood(), "utf-8"
    runner._setup("yes", {"hide": True, "in_stream": False})
    runner.threads, _, _ = runner.create_io_threads()
    runner.start_timer(0.2)
    started = time.monotonic()
    waiter = threading.Thread(target=runner.wait, daemon=True)
    waiter.start()
    waiter.join(5)
    assert not waiter.is_alive(), "still reading past the deadline"
    assert 0.2 <= time.monotonic() - started < 3
    assert runner.channel.closed and runner.timed_out


def invoke_watcher():  # type: ignore[no-untyped-def]
    from invoke import Responder

    return Responder(pattern="never printed", response="y\n")


def test_a_connect_error_on_a_jump_host_names_the_jump_host():
    import paramiko

    from atomicdeploy import remote
    from atomicdeploy.inventory import HostConfig

    host = HostConfig(
        name="web1", deploy_path="/srv/app", hostname="behind-jump", known_hosts="/kh"
    )
    key = paramiko.RSAKey.generate(1024)
    exc = paramiko.AuthenticationException("Authentication failed.")
    exc.jump_host = "10.0.0.9:2222"
    assert remote.describe_connect_error(host, exc) == (
        "jump host 10.0.0.9:2222: cannot log in to 10.0.0.9:2222: Authentication failed."
    )
    changed = paramiko.BadHostKeyException("[10.0.0.9]:2222", key, key)
    changed.jump_host = "10.0.0.9:2222"
    assert "ssh-keygen -R '[10.0.0.9]:2222' -f /kh" in remote.describe_connect_error(host, changed)
    plain = remote.describe_connect_error(host, paramiko.AuthenticationException("no"))
    assert plain == "cannot log in to behind-jump:22: no"


def test_an_identity_file_is_read_once_per_run_and_hard_cases_stay_paramikos(tmp_path):
    """Read once, the key is given to every connection of the run (paramiko would read the
    file for each, trying key types in turn); a key with a certificate beside it, one that
    needs a passphrase, and a missing file are left to paramiko, which uses the
    certificate or names the error."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fabric import Config as FabricConfig

    from atomicdeploy.connection import Identities, Shared, connect
    from atomicdeploy.inventory import HostConfig

    def key_file(name: str, encryption: ser.KeySerializationEncryption) -> str:
        path = tmp_path / name
        fmt = ser.PrivateFormat.OpenSSH
        path.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(ser.Encoding.PEM, fmt, encryption)
        )
        return str(path)

    plain = key_file("id_plain", ser.NoEncryption())
    locked = key_file("id_locked", ser.BestAvailableEncryption(b"secret"))
    certified = key_file("id_cert", ser.NoEncryption())
    (tmp_path / "id_cert-cert.pub").write_text("ssh-ed25519-cert-v01@openssh.com AAAA\n")
    ids = Identities()
    key = ids.key(plain)
    assert key is not None and ids.key(plain) is key
    assert ids.key(locked) is None
    assert ids.key(certified) is None
    assert ids.key(str(tmp_path / "missing")) is None
    odd = tmp_path / "id_odd"  # a key paramiko cannot load this way (a DSA or security key)
    odd.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    assert ids.key(str(odd)) is None

    shared = Shared(identities=ids)
    for path, given in ((plain, {"pkey": key}), (locked, {"key_filename": [locked]})):
        host = HostConfig(name="h", deploy_path="/srv/app", hostname="h", identity_file=path)
        kwargs = connect(host, FabricConfig(), shared).connect_kwargs
        assert {k: kwargs.get(k) for k in given} == given
        assert kwargs["look_for_keys"] is False


def test_closing_a_connection_closes_its_jump_host_too():
    """Fabric's close leaves a ProxyJump hop's connection (its socket and paramiko's thread
    for it) open; a run's connections close theirs, once per host."""
    from fabric import Config as FabricConfig
    from fabric import Connection

    from atomicdeploy.connection import connect
    from atomicdeploy.inventory import HostConfig

    closed = []

    class Hop(Connection):
        def close(self) -> None:
            closed.append(self.host)

    host = HostConfig(name="h", deploy_path="/srv/app", hostname="target")
    conn = connect(host, FabricConfig())
    conn.gateway = Hop("jump")
    conn.close()
    assert closed == ["jump"]
