"""The only I/O with a host: run one of our scripts, transfer files with rsync, call a
Python hook. Every error names the host and the step.

`Remote` does it; `DryRemote` (a dry run) records what would change something and runs
only what reads. Connections are made in connection.py.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from fabric import Connection
from invoke.exceptions import CommandTimedOut

from . import shell, tunnel
from .connection import (  # noqa: F401  (the names callers and tests know remote by)
    KnownHosts,
    Shared,
    _QuickAckSocket,
    _Runner,
    connect,
    describe_connect_error,
)
from .errors import RemoteError
from .inventory import HostConfig
from .streams import OUTPUT_CAP  # noqa: F401  (as above)


@dataclass(frozen=True)
class RsyncStats:
    files_transferred: int
    bytes_sent: int
    files_total: int


def parse_rsync_stats(text: str) -> RsyncStats:
    def number(label: str) -> int:
        match = re.search(rf"^{label}: ([\d,]+)", text, re.M)
        return int(match.group(1).replace(",", "")) if match else 0

    return RsyncStats(
        files_transferred=number("Number of regular files transferred"),
        bytes_sent=number("Total bytes sent"),
        files_total=number("Number of files"),
    )


class Remote:
    """One host's connection, with errors that say which host and step failed."""

    def __init__(self, host: HostConfig, conn: Connection) -> None:
        self.host = host
        self.name = host.name
        self.conn = conn
        # Where a Python hook's command output goes, line by line (the Fleet points
        # these at its Reporter, which prefixes the host and masks secrets).
        self.out: Callable[[str], None] = lambda line: print(f"[{self.name}] {line}")
        self.err: Callable[[str], None] = lambda line: print(f"[{self.name}] {line}")

    def run(
        self,
        script: str,
        step: str,
        *,
        ok: tuple[int, ...] = (0,),
        attach: Callable[[Callable[[bytes], None]], None] | None = None,
        out: IO[str] | None = None,
        read_only: bool = False,
        stand_in: str | None = None,
        reply: Callable[[str], str] | None = None,
    ) -> tuple[int, str]:
        """Run a script from `shell`; return (exit status, stdout). Raise on other statuses.

        `attach` is given, once the script started, the function that writes to its
        stdin (the go signal is written with it); `out` sees stdout as it arrives. A script
        made by `shell.then_next` asks for its second half: `reply` gets what the first
        half printed and returns the script to send.
        `read_only` and `stand_in` are for a dry run (DryRemote): a script that only reads
        runs there too, and a `stand_in` is the read-only script that runs there in place
        of this one, printing what this one prints when it succeeds.
        """
        streams: dict = {"hide": True}
        if out is not None:  # hide=True would keep stdout from reaching `out`
            streams = {"hide": False, "out_stream": out, "err_stream": io.StringIO()}
        keep_stdin = attach is not None or reply is not None
        try:
            runner = self._runner(script, keep_stdin=keep_stdin)
            runner.attach = attach
            if reply is not None:
                runner.reply = _framed(reply)
            result = runner.run(
                shell.remote(stdin=keep_stdin),
                warn=True,
                in_stream=False,
                pty=False,
                **streams,
            )
        except CommandTimedOut as exc:
            # The part of a sequence that hung, if the script had parts.
            # (An Invoke Result is false when its command failed: test for None.)
            hung = last_started(exc.result.stderr if exc.result is not None else "") or step
            raise RemoteError(
                f"no answer within {exc.timeout} s (command_timeout): stopped",
                host=self.name,
                step=hung,
                command=script,
            ) from exc
        except Exception as exc:  # connection-level: refused, auth, host key, DNS
            raise self._silent(step) or RemoteError(
                describe_connect_error(self.host, exc), host=self.name, step=step, command=script
            ) from exc
        if result.exited not in ok:
            silent = self._silent(step)
            if silent:
                raise silent
            failed_step, stderr = split_step_marker(result.stderr)
            raise RemoteError(
                f"{last_line(stderr) or last_line(result.stdout) or 'failed'}"
                f" (exit {result.exited})",
                host=self.name,
                step=failed_step or step,
                command=script,
                exit_status=result.exited,
                stderr=stderr,
                stdout=result.stdout,
            )
        return result.exited, result.stdout

    def _silent(self, step: str) -> RemoteError | None:
        """The error for a host the keepalive gave up on (see keepalive.py), if it did."""
        silent = getattr(self.conn, "silent", None)
        if silent is None:
            return None
        return RemoteError(
            f"no answer from the host for {silent:g} s (server_alive_interval x"
            " server_alive_count_max): the connection was given up",
            host=self.name,
            step=step,
        )

    def _runner(self, script: str, *, keep_stdin: bool) -> _Runner:
        """A runner for one of our scripts, which it sends on stdin (see shell.remote)."""
        self.conn.open()
        runner = _Runner(context=self.conn, inline_env=self.conn.config.inline_ssh_env)
        runner.payload = shell.script_payload(script, self.host.umask)
        runner.keep_stdin = keep_stdin
        return runner

    def rsync(self, argv: list[str], step: str, timeout: float | None = None) -> RsyncStats:
        """Run rsync locally; it reaches the host over this Remote's own SSH connection.

        `argv` comes from `shell.rsync_argv(..., ssh=shell.tunnel_rsh())`.
        """
        try:
            self.conn.open()
            proc = tunnel.run_rsync(self.conn.transport, argv, timeout)
        except FileNotFoundError:
            raise RemoteError(
                "rsync is not installed on this machine", host=self.name, step=step
            ) from None
        except subprocess.TimeoutExpired:
            raise RemoteError(
                f"rsync timed out after {timeout}s", host=self.name, step=step
            ) from None
        except tunnel.TunnelError as exc:
            raise self._silent(step) or RemoteError(
                f"rsync failed: the connection to the host was lost ({exc})",
                host=self.name,
                step=step,
            ) from None
        except Exception as exc:  # connection-level: refused, auth, host key, DNS
            raise RemoteError(
                describe_connect_error(self.host, exc), host=self.name, step=step
            ) from exc
        if proc.returncode != 0:
            raise self._silent(step) or RemoteError(
                f"rsync failed: {rsync_reason(proc.stderr, proc.returncode)}"
                f" (exit {proc.returncode})",
                host=self.name,
                step=step,
                command=" ".join(argv),
                exit_status=proc.returncode,
                stderr=proc.stderr,
            )
        return parse_rsync_stats(proc.stdout)

    def call(self, step: str, what: str, fn: Callable[[], object]) -> None:
        """Call Python that acts on the host (a Python hook, `what` names it)."""
        fn()

    @contextlib.contextmanager
    def nagle(self) -> Iterator[None]:
        """TCP_NODELAY off while a fleet's armed switches wait for their go signal.

        Measured with 30 loopback hosts on 2 cores: with it on, the small packets that
        follow each host's go reached the hosts during the renames and the skew median
        rose from 61-78 ms to 106-116 ms; every other command keeps it on (5 ms per
        round trip instead of 48 ms).
        """
        sock = getattr(self.conn.transport, "sock", None)
        tcp = isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6)
        if tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        try:
            yield
        finally:
            if tcp:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def login(self, step: str) -> None:
        """Open the connection now (it opens itself on first use otherwise), with the
        errors a command would have: so the login can overlap another host's work."""
        try:
            self.conn.open()
        except Exception as exc:  # refused, auth, host key, DNS
            raise self._silent(step) or RemoteError(
                describe_connect_error(self.host, exc), host=self.name, step=step
            ) from exc

    def hang_up(self) -> None:
        """The first half of close: see connection._Connection.hang_up."""
        hang_up = getattr(self.conn, "hang_up", None)
        if hang_up is not None:
            hang_up()

    def close(self) -> None:
        self.conn.close()


def _framed(reply: Callable[[str], str]) -> Callable[[str], bytes]:
    """`reply`'s script framed for the host (shell.script_payload). A `reply` that raised
    (a bug: it should not) still answers, with a script that fails: the host never waits
    for a second half that will not come."""

    def framed(printed: str) -> bytes:
        try:
            return shell.script_payload(reply(printed))
        except BaseException:
            return shell.script_payload("echo 'atomicdeploy: no second half' >&2; exit 70")

    return framed


def _markers(stderr: str) -> tuple[list[str], list[str], list[str]]:
    """(lines without markers, failed-part names, started-part names) in order.

    A marker ends its line but need not start it: a part that wrote to stderr without a
    final newline leaves its text before the next marker, and that text is kept.
    """
    kept: list[str] = []
    failed: list[str] = []
    started: list[str] = []
    for line in (stderr or "").splitlines():
        for marker, names in ((shell.STEP_MARKER, failed), (shell.START_MARKER, started)):
            text, found, name = line.partition(marker)
            if found:
                names.append(name.strip())
                break
        if text or not found:  # a line without a marker is kept even when blank
            kept.append(text)
    return kept, failed, started


def split_step_marker(stderr: str) -> tuple[str | None, str]:
    """`shell.sequence` names the part that failed on stderr; take it out of the text,
    with the markers of the parts that started."""
    kept, failed, _ = _markers(stderr)
    return (failed[-1] if failed else None), "\n".join(kept)


def last_started(stderr: str) -> str | None:
    """The part of a `shell.sequence` that started last: the one running at a timeout."""
    started = _markers(stderr)[2]
    return started[-1] if started else None


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# rsync's exit codes (man rsync), for when the host side dies before it can say why.
RSYNC_EXITS = {
    10: "error in socket I/O",
    11: "error in file I/O on the host (disk full?)",
    12: "error in the rsync protocol data stream (connection lost?)",
    23: "partial transfer",
    30: "timeout in data send/receive",
    35: "timeout waiting for the host",
    255: "ssh failed (connection refused, lost, or authentication failed)",
}


def rsync_reason(stderr: str, status: int | None = None) -> str:
    """rsync's most telling line: the first error, not the protocol noise after it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in lines:
        if not line.startswith("rsync error:") and "connection unexpectedly closed" not in line:
            return line
    if lines:
        return lines[-1]
    return RSYNC_EXITS.get(status or 0, "no output")
