"""A stand-in for a paramiko transport: each channel's command runs as a local process.

With it, real rsync talks to real `rsync --server` through `tunnel.run_rsync` with
no network, as it does over SSH on a real host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading


class LocalChannel:
    """The part of paramiko.Channel the tunnel uses, over a local subprocess."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.proc: subprocess.Popen | None = None
        self.command = ""
        self._err = b""
        self.closed = False
        # Set once the command has ended (its stderr closed), as paramiko sets it on the
        # exit status, which follows all of the channel's stderr.
        self.status_event = threading.Event()

    def exec_command(self, command: str) -> None:
        if self.fail:
            raise self.fail
        self.command = command
        self.proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_err(self) -> None:
        self._err = self.proc.stderr.read()
        self.status_event.set()

    def sendall(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def shutdown_write(self) -> None:
        self.proc.stdin.close()

    def recv(self, n: int) -> bytes:
        if self.closed:
            return b""
        return os.read(self.proc.stdout.fileno(), n)

    def recv_stderr_ready(self) -> bool:
        return bool(self._err)

    def recv_stderr(self, n: int) -> bytes:
        data, self._err = self._err[:n], self._err[n:]
        return data

    def kill(self) -> None:
        """The host's side dies: every process of the session."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.closed = True
        if self.proc and self.proc.poll() is None:
            self.kill()


class LocalTransport:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.channels: list[LocalChannel] = []
        self.fail = fail

    def open_session(self) -> LocalChannel:
        channel = LocalChannel(self.fail)
        self.channels.append(channel)
        return channel
