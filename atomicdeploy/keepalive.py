"""A host that stops answering is found dead in a bounded time, as OpenSSH's
`ServerAliveInterval` x `ServerAliveCountMax` find it.

A host whose sshd is frozen (a stopped VM, a full disk, a kernel stuck on I/O) keeps its TCP
connection open and says nothing: a command on it waits for `command_timeout`, which must stay
long for long hooks (900 s by default). So every `server_alive_interval` seconds the
connection asks the host for an answer (an SSH `keepalive@openssh.com` request, which any sshd
answers, if only to refuse it); after `server_alive_count_max` intervals without one, the
connection is closed, which ends whatever ran on it, and the error says why.
"""

from __future__ import annotations

import threading

import paramiko


class Keepalive:
    """Watches one SSH transport from a thread of its own; `silent` is set once it gave up."""

    def __init__(self, transport: paramiko.Transport, interval: float, count_max: int) -> None:
        self.transport, self.interval, self.count_max = transport, interval, count_max
        self.silent: float | None = None  # seconds without an answer, once it gave up
        self._stop = threading.Event()
        self._answered = threading.Event()
        self._answered.set()  # nothing asked yet
        self._thread = threading.Thread(target=self._watch, name="atomicdeploy-alive", daemon=True)

    def start(self) -> Keepalive:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        missed = 0
        while not self._stop.wait(self.interval) and self.transport.is_active():
            if self._answered.is_set():
                missed = 0
                self._ask()
                continue
            missed += 1
            if missed >= self.count_max:
                self.silent = self.interval * (missed + 1)
                self.transport.close()  # ends every command and transfer on it
                return

    def _ask(self) -> None:
        self._answered.clear()

        def ask() -> None:
            try:
                self.transport.global_request("keepalive@openssh.com", wait=True)
            except (EOFError, OSError, paramiko.SSHException):
                return  # the connection is gone: the command on it says so
            self._answered.set()

        threading.Thread(target=ask, name="atomicdeploy-alive-ask", daemon=True).start()
