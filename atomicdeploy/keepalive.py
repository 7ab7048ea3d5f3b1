"""A host that stops answering is found dead in a bounded time, as OpenSSH's
`ServerAliveInterval` x `ServerAliveCountMax` find it.

A host whose sshd is frozen (a stopped VM, a full disk, a kernel stuck on I/O) keeps its TCP
connection open and says nothing: a command on it waits for `command_timeout`, which must stay
long for long hooks (900 s by default). So every `server_alive_interval` seconds the
connection asks the host for an answer (an SSH `keepalive@openssh.com` request, which any sshd
answers, if only to refuse it); after `server_alive_count_max` intervals without one, the
connection is closed, which ends whatever ran on it, and the error says why.

One thread keeps the time for every connection of a run (a thread per connection was a
thread started per host per run, and each is C memory the allocator may keep). A question
waits for its answer in a thread of its own, started once an interval: sending it may block
on a host that stopped reading, and that must not stop the clock of the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paramiko


class Keepalive:
    """One connection's watch; `silent` is set once it gave up on the host."""

    def __init__(
        self,
        transport: paramiko.Transport,
        interval: float,
        count_max: int,
        forget: Callable[[Keepalive], None] = lambda alive: None,
    ) -> None:
        self.transport, self.interval, self.count_max = transport, interval, count_max
        self._forget = forget  # the clock lets go of it (and ends, if nothing is left)
        self.silent: float | None = None  # seconds without an answer, once it gave up
        self.due = time.monotonic() + interval
        self._missed = 0
        self._stopped = False
        self._answered = threading.Event()
        self._answered.set()  # nothing asked yet

    def stop(self) -> None:
        self._stopped = True
        self._forget(self)

    @property
    def watching(self) -> bool:
        return not self._stopped and self.transport.is_active()

    def tick(self, now: float) -> None:
        """An interval passed: ask again if the last question was answered, else count it
        missed and give the host up after `count_max` of them."""
        self.due = now + self.interval
        if self._answered.is_set():
            self._missed = 0
            self._ask()
            return
        self._missed += 1
        if self._missed >= self.count_max:
            self.silent = self.interval * (self._missed + 1)
            self._stopped = True
            self.transport.close()  # ends every command and transfer on it

    def _ask(self) -> None:
        self._answered.clear()

        def ask() -> None:
            try:
                self.transport.global_request("keepalive@openssh.com", wait=True)
            except (EOFError, OSError, paramiko.SSHException):
                return  # the connection is gone: the command on it says so
            self._answered.set()

        threading.Thread(target=ask, name="atomicdeploy-alive-ask", daemon=True).start()


class Keepalives:
    """The clock of a run's connections: one thread, while any connection is watched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[Keepalive] = []
        self._look = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, transport: paramiko.Transport, interval: float, count_max: int) -> Keepalive:
        alive = Keepalive(transport, interval, count_max, self._forget)
        with self._lock:
            self._watched.append(alive)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._keep_time, name="atomicdeploy-alive", daemon=True
                )
                self._thread.start()
        self._look.set()  # it may be due before the one the thread sleeps for
        return alive

    def _forget(self, alive: Keepalive) -> None:
        """Let go of a closed connection now, not at the clock's next tick: its transport
        is then garbage when the run collects (runner.Fleet.close)."""
        with self._lock:
            if alive in self._watched:
                self._watched.remove(alive)
        self._look.set()

    def _keep_time(self) -> None:
        while (pause := self._tick()) is not None:
            self._look.wait(pause)
            self._look.clear()

    def _tick(self) -> float | None:
        """Tick every connection that is due; the seconds until the next one is, or None
        (and the thread ends) once no connection is left to watch."""
        with self._lock:
            now = time.monotonic()
            for alive in self._watched:
                if alive.watching and alive.due <= now:
                    alive.tick(now)
            self._watched = [alive for alive in self._watched if alive.watching]
            if not self._watched:
                self._thread = None
                return None
            return max(0.0, min(alive.due for alive in self._watched) - time.monotonic())
