"""rsync over the SSH connection the deploy already has: no second login per host.

rsync needs a remote shell that starts `rsync --server` on the host. Instead of
OpenSSH (a second TCP connection, key exchange and login for every host: 0.13 CPU-s
of the controller's 0.19 per host in the fleet benchmark), rsync gets a local relay
(`shell.tunnel_script`) that hands its command over a pipe; this module runs that
command on a new channel of the host's paramiko transport and carries the bytes both
ways. The upload thus uses the same host key check, login, ssh_config and gateway as
every other command, by construction.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field

import paramiko

from . import shell

CHUNK = 1 << 16


class TunnelError(Exception):
    """The host side of the tunnel could not be started (connection lost, refused)."""


@dataclass
class _Relay:
    """The controller's half of one transfer: two pumps and what they saw."""

    transport: paramiko.Transport
    proc: subprocess.Popen[str]
    to_rsync: int  # write end: bytes from the host, to the local rsync
    from_rsync: int  # read end: rsync's command, then bytes for the host
    channel: paramiko.Channel | None = None
    error: BaseException | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        thread = threading.Thread(target=self._upstream, name="atomicdeploy-tunnel", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _read_command(self) -> tuple[list[str], bytes]:
        """The relay's header: count, then that many NUL-terminated arguments."""
        data = b""
        while True:
            fields = data.split(b"\0")
            if len(fields) > 1 and fields[0].isdigit() and len(fields) > int(fields[0]) + 1:
                count = int(fields[0])
                args = [f.decode("utf-8", "surrogateescape") for f in fields[1 : count + 1]]
                return args, b"\0".join(fields[count + 1 :])
            chunk = os.read(self.from_rsync, CHUNK)
            if not chunk:
                raise TunnelError("rsync stopped before it named its command")
            data += chunk

    def _upstream(self) -> None:
        """rsync -> host; opens the channel first, and starts the other direction."""
        try:
            try:
                args, rest = self._read_command()
            except (OSError, TunnelError):
                return  # rsync stopped on its own (a bad argument): its stderr says why
            try:
                channel = self.transport.open_session()
                channel.exec_command(shell.server_command(args))
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self.error = exc
                # rsync waits for the host's answer, which will never come.
                self.proc.kill()
                return
            self.channel = channel
            down = threading.Thread(
                target=self._downstream, name="atomicdeploy-tunnel", daemon=True
            )
            self.threads.append(down)
            down.start()
            data = rest
            while True:
                if data:
                    channel.sendall(data)
                data = os.read(self.from_rsync, CHUNK)
                if not data:
                    break
            channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the connection went away: rsync sees its stream end and says so
        finally:
            os.close(self.from_rsync)
            if self.channel is None:
                os.close(self.to_rsync)  # no downstream: let rsync's reader see the end

    def _downstream(self) -> None:
        """host -> rsync, until the host's rsync closes its output."""
        assert self.channel is not None
        try:
            while True:
                data = self.channel.recv(CHUNK)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(self.to_rsync, view) :]
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            os.close(self.to_rsync)

    def settle(self, wait: float) -> None:
        """Give the host's side up to `wait` s to end on its own: what it wrote to stderr
        (why it refused) comes before its exit status, and would be lost to `abort`."""
        if self.channel is not None:
            self.channel.status_event.wait(wait)

    def abort(self) -> None:
        """Close the channel: the downstream pump ends, and with it the relay's `cat`s."""
        if self.channel is not None:
            self.channel.close()

    def finish(self, wait: float) -> str:
        """Let both pumps end; return what the host's side wrote to stderr."""
        for thread in self.threads:
            thread.join(wait)
        stderr = b""
        if self.channel is not None:
            while self.channel.recv_stderr_ready():
                stderr += self.channel.recv_stderr(CHUNK)
            self.channel.close()
        return stderr.decode("utf-8", "replace")


def run_rsync(
    transport: paramiko.Transport, argv: list[str], timeout: float | None
) -> subprocess.CompletedProcess[str]:
    """Run rsync (whose `--rsh` is `shell.tunnel_rsh()`) over `transport`.

    Returns rsync's own result, with the host side's stderr appended to rsync's.
    Raises TunnelError if the host's side could not be started, and
    subprocess.TimeoutExpired after killing rsync.
    """
    from_host_r, from_host_w = os.pipe()
    to_host_r, to_host_w = os.pipe()
    env = {**os.environ, shell.TUNNEL_ENV: shell.tunnel_script(from_host_r, to_host_w)}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            pass_fds=(from_host_r, to_host_w),
        )
    except BaseException:
        for fd in (from_host_r, from_host_w, to_host_r, to_host_w):
            os.close(fd)
        raise
    os.close(from_host_r)  # the child's ends: ours closed, so each pipe ends when it does
    os.close(to_host_w)
    relay = _Relay(transport, proc, to_rsync=from_host_w, from_rsync=to_host_r)
    relay.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        relay.abort()  # else the relay's reader keeps rsync's stderr open
        proc.communicate()
        relay.finish(wait=5)
        raise
    if proc.returncode != 0:
        relay.settle(wait=2)
        relay.abort()
    host_err = relay.finish(wait=5)
    if relay.error is not None and proc.returncode != 0:
        raise TunnelError(str(relay.error) or type(relay.error).__name__)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err + host_err)
