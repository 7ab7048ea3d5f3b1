"""switch: the only way `current` ever changes, for deploy and rollback alike.

Go-live on one host is one round trip: swap `current`, point nginx at the release
and wait for its old workers, log, clear the opcache.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import shell
from ..config import Config
from ..errors import RemoteError
from ..remote import Remote
from . import nginx, opcache


@dataclass(frozen=True)
class Switched:
    warnings: tuple[str, ...]  # e.g. "opcache reset (fcgi) failed: ..."
    at: float | None  # the host's clock (epoch seconds) right after the rename
    notes: tuple[str, ...] = ()  # e.g. "opcache kept at 12.3% in use"


class Fire:
    """The fleet's go signal, given once: each armed script attached to it is written `go`
    on its stdin at that moment (or `no`, if `abort` was set first), by the thread that
    fires. No thread per host polls for it: Invoke's stdin thread would wake 50 times a
    second per host for the whole run and write `go` a byte per 10 ms (a hundred hosts:
    a hundred such threads; see docs/benchmarks.md for what removing them saved)."""

    def __init__(self) -> None:
        self.abort = threading.Event()
        self._fired = threading.Event()
        self._lock = threading.Lock()
        self._waiting: list[Callable[[bytes], None]] = []

    def is_set(self) -> bool:
        return self._fired.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._fired.wait(timeout)

    @property
    def told_no(self) -> bool:
        return self._fired.is_set() and self.abort.is_set()

    def set(self) -> None:
        """Fire: every script attached so far is told now, those attached later at once."""
        with self._lock:
            if self._fired.is_set():
                return
            self._fired.set()
            waiting, self._waiting = self._waiting, []
        for send in waiting:
            self._tell(send)

    def attach(self, send: Callable[[bytes], None]) -> None:
        """`send` writes to one armed script's stdin."""
        with self._lock:
            if not self._fired.is_set():
                self._waiting.append(send)
                return
        self._tell(send)

    def _tell(self, send: Callable[[bytes], None]) -> None:
        # A script that already ended (its host failed) has nobody left to tell.
        with contextlib.suppress(Exception):
            send(b"no\n" if self.abort.is_set() else b"go\n")


@dataclass
class Trigger:
    """Arm-then-fire: each host's script waits, just before its rename, for `fire`.

    `armed` is set when the host's script is waiting (or when the host is done,
    failed or not, so the fleet never waits for a host that cannot arm). If the fire's
    `abort` is set when it fires, the script is told `no`: it renames nothing and ends.
    """

    fire: Fire
    armed: threading.Event


class Cancelled(Exception):
    """The armed switch was told `no`: nothing changed on the host (the fleet stopped)."""


# The armed go-live script's exit status when told anything but `go` (see shell.go_live).
TOLD_NO = 91


class _ArmedWatch(io.TextIOBase):
    """stdout for an armed script: sets `armed` when the script says it waits."""

    def __init__(self, armed: threading.Event) -> None:
        self._armed = armed
        self._seen = ""

    def write(self, text: str) -> int:
        self._seen = (self._seen + text)[-200:]
        if shell.ARMED_MARKER in self._seen:
            self._armed.set()
        return len(text)


def armed_run(
    remote: Remote, script: str, trigger: Trigger, reply: Callable[[str], str] | None = None
) -> str:
    """Run an armed script: it waits for the go signal just before its rename. (With
    `reply`, a two-half script: see Remote.run.) Returns its stdout."""
    try:
        with remote.nagle():
            _, out = remote.run(
                script,
                "switch",
                attach=trigger.fire.attach,
                out=_ArmedWatch(trigger.armed),
                reply=reply,
            )
    except RemoteError as exc:
        if trigger.fire.told_no and exc.exit_status == TOLD_NO:
            raise Cancelled(remote.name) from exc
        raise
    finally:
        trigger.armed.set()
    return out


def script(
    cfg: Config,
    release: str,
    log_lines: Sequence[str] = (),
    *,
    unlock: bool = False,
    armed: bool = False,
) -> str:
    """The go-live script that makes `release` live on this host (see `switch`)."""
    layout = cfg.layout
    text = shell.go_live(
        layout,
        release,
        log_lines=log_lines,
        nginx=nginx.go_live_parts(cfg, release),
        opcache=opcache.script(cfg),
        armed=armed,
    )
    return shell.then_unlock(text, layout, cfg.run.token) if unlock else text


def switch(
    remote: Remote,
    cfg: Config,
    release: str,
    log_lines: Sequence[str] = (),
    *,
    unlock: bool = False,
    trigger: Trigger | None = None,
) -> Switched:
    """Make `release` live on this host.

    `readlink` then reports what is live, and we check it is what we asked for.
    With `unlock`, our lock is released in the same round trip, whatever happened.
    With a `trigger`, the rename waits for the fleet's go signal.
    """
    text = script(cfg, release, log_lines, unlock=unlock, armed=trigger is not None)
    expected = cfg.layout.current_target(release)
    if trigger is None:
        # A dry run switches nothing: it answers as a switch that went well would.
        _, out = remote.run(text, "switch", stand_in=shell.say(expected))
    else:
        out = armed_run(remote, text, trigger)
    return switched(out, expected, remote.name)


def switched(out: str, expected: str, host: str) -> Switched:
    """What a go-live script printed: its warnings, the host's clock at the rename, and
    `current`'s target, which must be `expected`."""
    warnings, notes, rest, at = [], [], [], None
    for line in out.splitlines():
        if line.startswith(shell.WARN_MARKER):
            warnings.append(line[len(shell.WARN_MARKER) :])
        elif line.startswith(shell.NOTE_MARKER):
            notes.append(line[len(shell.NOTE_MARKER) :])
        elif line.startswith(shell.SWITCHED_MARKER):
            try:
                at = float(line[len(shell.SWITCHED_MARKER) :])
            except ValueError:
                at = None
        elif line.strip() and line.strip() != shell.ARMED_MARKER:
            rest.append(line.strip())
    live = rest[-1] if rest else ""
    if live != expected:
        raise RemoteError(
            f"current points to {live!r}, expected {expected!r}", host=host, step="switch"
        )
    return Switched(tuple(warnings), at, tuple(notes))
