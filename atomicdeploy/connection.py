"""Connections to hosts: one per host, with OpenSSH's host key rules and fast round trips.

Host keys are checked the way OpenSSH's `StrictHostKeyChecking=accept-new` does (Fabric
alone accepts any key): a new host's key is recorded, a changed key is refused; the hops of
a ProxyJump chain are checked the same way. The socket sends and acknowledges small packets
at once, which takes a round trip from 48 ms to 3-5 ms on loopback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import paramiko
from fabric import Config as FabricConfig
from fabric import Connection
from fabric.runners import Remote as FabricRunner
from invoke.util import ExceptionHandlingThread

from .errors import ConfigError
from .inventory import HostConfig
from .keepalive import Keepalive, Keepalives
from .streams import Asking, Output, SetOnly

logging.getLogger("paramiko").addHandler(logging.NullHandler())
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
READS_PER_PASS = 64  # chunks of one stream read before the deadline is looked at again
CLOSE_WAIT = 2.0  # seconds close() waits for paramiko's thread (a gateway's socket may lag)


class KnownHosts:
    """One run's known_hosts files: each read once, new keys appended one writer at a time.

    A stage's hosts usually share one file, which holds a line per host: read for every
    connection, that is a key parsed per host per host (10,000 at 100 hosts, 0.4 s of the
    controller's CPU); read once, it is one per host.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[str, paramiko.HostKeys] = {}

    def load(self, client: paramiko.SSHClient, path: str, hostname: str) -> None:
        """The keys `path` holds for `hostname` (as paramiko names it), into `client`."""
        with self._lock:
            keys = self._read.get(path)
            if keys is None:
                keys = self._read[path] = paramiko.HostKeys(path)
            found = keys.lookup(hostname)
            for keytype, key in (found or {}).items():
                client.get_host_keys().add(hostname, keytype, key)

    def record(self, path: str, hostname: str, key: paramiko.PKey) -> None:
        with self._lock:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            with open(path, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            if path in self._read:
                self._read[path].add(hostname, key.get_name(), key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: KnownHosts, path: str) -> None:
        self.known_hosts = known_hosts
        self.path = path

    def missing_host_key(self, client, hostname, key) -> None:  # type: ignore[no-untyped-def]
        self.known_hosts.record(self.path, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


class Identities:
    """Each identity file read once per run, where paramiko reads it for every connection,
    trying one key type after another: each miss is an exception whose traceback holds
    the SSH client, a reference cycle that kept every connection of the run (its buffers,
    its ciphers) in memory until the cyclic collector ran, long after the run ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, paramiko.PKey | None] = {}

    def key(self, path: str) -> paramiko.PKey | None:
        """The key `path` holds, or None for paramiko to load it its own way."""
        with self._lock:
            if path not in self._keys:
                self._keys[path] = _load_key(path)
            return self._keys[path]


def _load_key(path: str) -> paramiko.PKey | None:
    # A key with a certificate beside it, one that needs a passphrase, a file that cannot be
    # read: paramiko's own path, which uses the certificate, or names the error.
    if os.path.exists(f"{path}-cert.pub"):
        return None
    try:
        return paramiko.PKey.from_path(path)
    except Exception:  # a passphrase not given (TypeError), a key type paramiko does not
        return None  # load this way (a DSA or security key): its own path says or skips it


@dataclass
class Shared:
    """What the connections of one run share: the known_hosts files, each read once; one
    keepalive clock; each identity file, read once."""

    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    keepalives: Keepalives = field(default_factory=Keepalives)
    identities: Identities = field(default_factory=Identities)


class _Runner(FabricRunner):
    """Fabric's runner, told at once when the command exits, that sends a script on
    stdin and keeps only the tail of what the command prints.

    The thread that runs the command reads its output itself, where Invoke starts a
    reader thread per stream and a timer thread per command (a deploy of 10 hosts
    started 160 of them; each thread started is C memory the allocator may keep, and a
    controller running deploy after deploy grew with them). It sleeps on paramiko's
    events, so a short command's answer is not held back by Invoke's 10 ms poll, and
    keeps the command's timeout as a deadline it checks as it wakes.
    """

    _deadline: float | None = None
    _expired = False
    _inline: tuple[Output, Output] | None = None  # read by `wait`, in the command's thread
    # Set by `Remote.run` for its own scripts (see shell.remote); a Python hook's
    # `c.run` goes through Fabric's usual path.
    payload: bytes | None = None
    keep_stdin = False
    # Set by `Remote.run` for a script that asks for the next one (shell.then_next).
    reply: Callable[[str], bytes] | None = None
    # Set by `Remote.run`: given the function that writes to the script's stdin.
    attach: Callable[[Callable[[bytes], None]], None] | None = None

    def send_start_message(self, command: str) -> None:
        super().send_start_message(command)
        if self.payload is not None:
            # Written here, not by Invoke's stdin thread, which naps 10 ms per chunk.
            self.channel.sendall(self.payload)
            if not self.keep_stdin:
                self.channel.shutdown_write()
        if self.attach is not None:
            self.attach(self.channel.sendall)

    def create_io_threads(self):  # type: ignore[no-untyped-def]
        """No reader thread: `wait` reads both streams. A Python hook's `c.run` with
        watchers gets one reader thread, so that a watcher's error ends the command as
        Invoke reports it, and so does one run `asynchronous=True`, whose output must be
        read while the hook goes on; a pty (one stream) and a stream to send keep
        Invoke's way."""
        if self.using_pty:
            return super().create_io_threads()
        stdout: list[str] = []
        stderr: list[str] = []
        hide = self.opts["hide"]
        out = self._output(stdout, "stdout", self.streams["out"], "stdout" in hide)
        err = self._output(stderr, "stderr", self.streams["err"], "stderr" in hide)
        threads = {}
        if self.watchers or self._asynchronous:
            threads[self._read_both] = ExceptionHandlingThread(
                target=self._read_both, kwargs={"out": out, "err": err}
            )
        else:
            self._inline = (out, err)
        if self.streams["in"]:  # a Python hook's `c.run` given a stream to send
            threads[self.handle_stdin] = ExceptionHandlingThread(
                target=self.handle_stdin,
                kwargs={
                    "input_": self.streams["in"],
                    "output": self.streams["out"],
                    "echo": self.opts["echo_stdin"],
                },
            )
        return threads, stdout, stderr

    def _read_both(self, out: Output, err: Output) -> None:
        """Take what the command prints on either stream as it comes, until both end.

        Paramiko sets a buffer's event when data or the end arrives; both buffers set one
        event here, which only this loop clears, before it reads: nothing fed after that
        can be missed. The end (EOF, or the channel closed) is seen before the last
        reads, so nothing fed before it is left unread."""
        chan = self.channel
        wake = threading.Event()
        chan.in_buffer.set_event(SetOnly(wake))
        chan.in_stderr_buffer.set_event(SetOnly(wake))
        while True:
            wake.clear()
            ended = chan.closed or chan.eof_received
            out_drained = self._take(chan.recv_ready, chan.recv, out)
            err_drained = self._take(chan.recv_stderr_ready, chan.recv_stderr, err)
            drained = out_drained and err_drained
            if ended and drained:
                return
            if self.threads and self.has_dead_threads:
                return  # the stdin thread failed: Invoke reports it, as it would
            pause = self._keep_deadline(1.0)  # a command that prints without end, too
            if drained:
                wake.wait(pause)

    def _take(self, ready: Callable[[], bool], recv: Callable[[int], bytes], sink: Output) -> bool:
        """Up to READS_PER_PASS chunks of one stream; whether it has nothing more now."""
        for _ in range(READS_PER_PASS):
            if not ready():
                return True
            sink.take(self.decode(recv(self.read_chunk_size)))
        return not ready()

    def _handle_output(
        self, buffer_: list[str], hide: bool, output: IO[str], reader: Callable[[int], bytes]
    ) -> None:
        stream = "stdout" if reader == self.read_proc_stdout else "stderr"
        sink = self._output(buffer_, stream, output, hide)
        for data in self.read_proc_output(reader):
            sink.take(data)

    def _output(self, buffer_: list[str], stream: str, output: IO[str], hide: bool) -> Output:
        asking = None
        if self.reply is not None and stream == "stdout":
            asking = Asking(self.reply, self.channel.sendall)
        return Output(self, buffer_, hide, output, asking)

    def start_timer(self, timeout: int | None) -> None:
        self._deadline = None if timeout is None else time.monotonic() + timeout

    @property
    def timed_out(self) -> bool:
        return self._expired

    def _keep_deadline(self, step: float) -> float:
        """Kill the command if its deadline passed (closing the channel ends every wait
        on it); else how long to sleep: `step`, or less if the deadline is nearer."""
        deadline = self._deadline  # read once: a hook's reader thread keeps it too
        if deadline is None:
            return step
        left = deadline - time.monotonic()
        if left > 0:
            return min(step, left)
        self._expired, self._deadline = True, None
        self.kill()
        return step

    def wait(self) -> None:
        if self._inline is not None:
            self._read_both(*self._inline)
            # Each Output holds this runner: without the pair, refcounting frees the runner
            # and its output when the command returns, not the cyclic collector later.
            self._inline = None
        # A reader thread that died (a watcher's error) ends the wait: then poll for it.
        step = 0.05 if self.threads else 1.0
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(self._keep_deadline(step))


QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once (TCP_QUICKACK, Linux).

    Right after the login, sshd sends a hostkeys-00@openssh.com notice and, when our
    first channel request arrives, its confirmation: two small packets, so its Nagle
    holds the confirmation until the notice is acknowledged, and Linux delays that
    ACK by 40 ms. Measured on loopback: the first command after a login took 43-46 ms
    to open its channel, 2.0-2.4 ms with this. The kernel drops quick-ACK mode on its
    own, so it is set again after every read.
    """

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        with contextlib.suppress(OSError):
            self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        return data


class _Connection(Connection):
    """A Connection whose socket sends small packets at once (TCP_NODELAY) and
    acknowledges at once what it receives (see _QuickAckSocket).

    The key exchange, the login and each exec request are a few small SSH packets
    in a row: with Nagle's algorithm each waits for the ACK of the one before, which
    the host delays by 40 ms. Measured on loopback: 76 ms against 28 ms to log in,
    48 ms against 3-5 ms per `true`. OpenSSH sets the same option for its
    interactive sessions. A gateway (ProxyCommand) keeps Fabric's own socket.
    """

    alive: tuple[int, int] = (0, 0)  # server_alive_interval, server_alive_count_max
    keepalives: Keepalives | None = None  # the run's clock, if it shares one
    keepalive: Keepalive | None = None

    def open(self):  # type: ignore[no-untyped-def]
        if self.is_connected:
            return super().open()
        result = self._open()
        interval, count = self.alive
        if interval and self.transport is not None and not self._watched:
            clock = self.keepalives or Keepalives()
            self.keepalive = clock.watch(self.transport, interval, count)
        return result

    @property
    def _watched(self) -> bool:
        """A keepalive watches this connection (not one left from before a reconnect)."""
        return self.keepalive is not None and self.keepalive.watching

    @property
    def silent(self) -> float | None:
        """Seconds the host did not answer, if the keepalive gave up on it."""
        return self.keepalive.silent if self.keepalive else None

    def hang_up(self) -> None:
        """Shut the socket down: paramiko's reader wakes and ends at once, where a plain
        close leaves it to notice at its next 0.1 s poll. A fleet hangs up every
        connection first, then closes each: their threads end together."""
        if self.keepalive is not None:
            self.keepalive.stop()
        transport = self.transport
        if transport is not None and isinstance(transport.sock, socket.socket):
            with contextlib.suppress(OSError):
                transport.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close, and return once paramiko's thread for the connection has ended: the
        transport (a reference cycle: a table of its own methods) is then garbage that
        the run collects as it ends (runner.Fleet.close)."""
        self.hang_up()
        transport = self.transport
        super().close()
        if transport is not None and transport is not threading.current_thread():
            transport.join(CLOSE_WAIT)
        if isinstance(self.gateway, Connection):
            self.gateway.close()  # its ProxyJump hop, which Fabric leaves open

    def _open(self):  # type: ignore[no-untyped-def]
        if self.gateway or "sock" in self.connect_kwargs:
            return super().open()
        # As paramiko would connect, plus the option; paramiko's own error for a
        # refused connection, which describe_connect_error knows.
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except ConnectionRefusedError as exc:
            raise paramiko.ssh_exception.NoValidConnectionsError(
                {(self.host, self.port): exc}
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if QUICKACK is not None:
            sock = _QuickAckSocket(fileno=sock.detach())
            sock.settimeout(self.connect_timeout)  # as create_connection left it
        self.connect_kwargs = {**self.connect_kwargs, "sock": sock}
        try:
            return super().open()
        except BaseException:
            sock.close()
            raise
        finally:
            self.connect_kwargs = {k: v for k, v in self.connect_kwargs.items() if k != "sock"}


class _Hop(_Connection):
    """A ProxyJump hop, checked like the host it leads to.

    Fabric builds each hop as a plain Connection that accepts any key and records
    none; this one is given the same known_hosts, policy and timeouts as the target,
    and a failure while opening it says which jump host it was.
    """

    def open(self):  # type: ignore[no-untyped-def]
        try:
            return super().open()
        except Exception as exc:
            if not hasattr(exc, "jump_host"):
                exc.jump_host = f"{self.host}:{self.port}"  # type: ignore[attr-defined]
            raise


def _check_host_keys(conn: Connection, host: HostConfig, known_hosts: KnownHosts) -> None:
    """OpenSSH's accept-new on `conn`: known keys must match, new ones are recorded."""
    if os.path.exists(SYSTEM_KNOWN_HOSTS):
        conn.client.load_system_host_keys(SYSTEM_KNOWN_HOSTS)
    if os.path.exists(host.known_hosts):
        # The name paramiko looks the host up by (SSHClient.connect).
        name = conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"
        known_hosts.load(conn.client, host.known_hosts, name)
    conn.client.set_missing_host_key_policy(_AcceptNew(known_hosts, host.known_hosts))


def _timeouts(host: HostConfig) -> dict:
    # A host that accepts TCP but never speaks SSH must not hold us longer than a
    # refused connection would (paramiko waits 15 s for the banner, 30 s for auth).
    return {"banner_timeout": host.connect_timeout, "auth_timeout": host.connect_timeout}


def _checked_gateway(gateway: object, host: HostConfig, known_hosts: KnownHosts) -> object:
    """The ProxyJump chain Fabric built from ssh_config, rebuilt hop by hop as `_Hop`s.

    Each hop keeps what ssh_config says for it (HostName, User, Port, IdentityFile);
    a ProxyCommand string runs its own ssh client, which checks its own keys.
    """
    if not isinstance(gateway, Connection):
        return gateway
    inner = _checked_gateway(gateway.gateway, host, known_hosts)
    hop = _Hop(
        gateway.original_host,
        user=gateway.user,
        port=gateway.port,
        config=gateway.config,
        connect_timeout=host.connect_timeout,
        connect_kwargs=_timeouts(host),
        gateway=inner or False,
    )
    _check_host_keys(hop, host, known_hosts)
    return hop


def connect(host: HostConfig, base: FabricConfig, shared: Shared | None = None) -> Connection:
    """A Connection of its own for one host (never shared between threads), with what it
    shares with the run's other connections (a run of its own if not given)."""
    shared = shared or Shared()
    config = base.clone()
    config.run.in_stream = False  # never read the local terminal; CI has none
    config.runners.remote = _Runner
    # A command that hangs (a hook waiting on a lock, a dead NFS mount) ends with an
    # error instead of holding the deploy and its lock forever; hooks' c.run too.
    config.timeouts.command = host.command_timeout
    if host.ssh_config:
        # A cloned Config carries its parsed ssh_config as an explicit object, so
        # load_ssh_config() would not read the file: parse it and set it ourselves.
        try:
            parsed = paramiko.SSHConfig.from_path(host.ssh_config)
        except OSError as exc:
            raise ConfigError(f"ssh_config {host.ssh_config}: {exc.strerror}") from None
        config._set(base_ssh_config=parsed)
    kwargs = _timeouts(host)
    if host.identity_file:
        key = shared.identities.key(host.identity_file)
        kwargs.update({"pkey": key} if key else {"key_filename": [host.identity_file]})
        kwargs.update(look_for_keys=False)
    conn = _Connection(
        host.hostname,
        user=host.remote_user,
        port=host.port,
        config=config,
        connect_timeout=host.connect_timeout,
        forward_agent=host.forward_agent,
        connect_kwargs=kwargs,
    )
    conn.alive = (host.server_alive_interval, host.server_alive_count_max)
    conn.keepalives = shared.keepalives
    _check_host_keys(conn, host, shared.known_hosts)
    conn.gateway = _checked_gateway(conn.gateway, host, shared.known_hosts)
    return conn


def describe_connect_error(host: HostConfig, exc: BaseException) -> str:
    jump = getattr(exc, "jump_host", None)
    if jump:
        return f"jump host {jump}: {_describe(host, exc, jump)}"
    return _describe(host, exc, f"{host.hostname}:{host.port or 22}")


def _describe(host: HostConfig, exc: BaseException, where: str) -> str:
    if isinstance(exc, paramiko.BadHostKeyException):
        name, _, port = where.rpartition(":")
        return (
            f"host key of {where} has changed (known_hosts: {host.known_hosts}); refusing to"
            f" connect. If the change is expected, remove the old key with"
            f" ssh-keygen -R '[{name}]:{port}' -f {host.known_hosts}"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return f"cannot log in to {where}: {exc}"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where.rpartition(':')[0]}: {exc.strerror}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"cannot connect to {where}: timed out"
    return f"cannot use {where}: {type(exc).__name__}: {exc}"
