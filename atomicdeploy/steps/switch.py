"""switch: the only way `current` ever changes, for deploy and rollback alike.

Go-live on one host is one round trip: swap `current`, point nginx at the release
and wait for its old workers, log, clear the opcache.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import commands
from ..config import Config
from ..errors import RemoteError
from ..remote import Remote
from . import nginx, opcache


@dataclass(frozen=True)
class Switched:
    warnings: tuple[str, ...]  # e.g. "opcache reset (fcgi) failed: ..."
    at: float | None  # the host's clock (epoch seconds) right after the rename


@dataclass
class Trigger:
    """Arm-then-fire: each host's script waits, just before its rename, for `fire`.

    `armed` is set when the host's script is waiting (or when the host is done,
    failed or not, so the fleet never waits for a host that cannot arm). `channel`
    is the script's SSH channel once it runs: the firing thread writes `go` to every
    armed host's channel itself, one after the other, and sets `sent`.
    """

    fire: threading.Event
    armed: threading.Event
    sent: threading.Event = field(default_factory=threading.Event)
    channel: Any = None

    def send_go(self) -> None:
        """Write the go signal to this host's script now (the firing thread calls it)."""
        if self.channel is not None:
            with contextlib.suppress(Exception):  # a host that failed has no channel left
                self.channel.sendall(GO)
                self.sent.set()


GO = b"go\n"


class _GoSignal(io.TextIOBase):
    """stdin for an armed script: nothing until fired, then `go` (unless the firing
    thread wrote it to the channel already), and never an end of file.

    The script reads one line and nothing else reads stdin; closing it would send
    each host an EOF message right in the middle of the fleet's renames (it made the
    skew 25 ms worse here). The channel closes when the script ends.
    """

    def __init__(self, trigger: Trigger) -> None:
        self._trigger = trigger
        self._left = GO.decode()

    def attach(self, channel: Any) -> None:
        self._trigger.channel = channel

    def read(self, size: int = -1) -> str | None:  # type: ignore[override]
        trigger = self._trigger
        if not trigger.fire.wait(0.05):
            return None  # invoke: "not ready yet", asks again
        if self._left and not trigger.sent.is_set():
            out, self._left = self._left, ""
            return out
        if trigger.channel is not None:
            trigger.channel.status_event.wait(0.05)  # sleep until the script ends
        return None


class _ArmedWatch(io.TextIOBase):
    """stdout for an armed script: sets `armed` when the script says it waits."""

    def __init__(self, armed: threading.Event) -> None:
        self._armed = armed
        self._seen = ""

    def write(self, text: str) -> int:
        self._seen = (self._seen + text)[-200:]
        if commands.ARMED_MARKER in self._seen:
            self._armed.set()
        return len(text)


def switch(remote: Remote, cfg: Config, release: str, log_lines: Sequence[str] = (),
           *, unlock: bool = False, trigger: Trigger | None = None) -> Switched:  # fmt: skip
    """Make `release` live on this host.

    `readlink` then reports what is live, and we check it is what we asked for.
    With `unlock`, our lock is released in the same round trip, whatever happened.
    With a `trigger`, the rename waits for the fleet's go signal.
    """
    layout = cfg.layout
    script = commands.go_live(
        layout, release, log_lines=log_lines,
        nginx=nginx.go_live_parts(cfg, release), opcache=opcache.script(cfg),
        armed=trigger is not None,
    )  # fmt: skip
    if unlock:
        script = commands.then_unlock(script, layout, cfg.run.token)
    if trigger is None:
        _, out = remote.run(script, "switch")
    else:
        try:
            _, out = remote.run(script, "switch", stdin=_GoSignal(trigger),
                                out=_ArmedWatch(trigger.armed))  # fmt: skip
        finally:
            trigger.armed.set()
    if remote.dry:
        return Switched((), None)
    warnings, rest, at = [], [], None
    for line in out.splitlines():
        if line.startswith(commands.WARN_MARKER):
            warnings.append(line[len(commands.WARN_MARKER):])
        elif line.startswith(commands.SWITCHED_MARKER):
            try:
                at = float(line[len(commands.SWITCHED_MARKER):])
            except ValueError:
                at = None
        elif line.strip() and line.strip() != commands.ARMED_MARKER:
            rest.append(line.strip())
    expected = layout.current_target(release)
    live = rest[-1] if rest else ""
    if live != expected:
        raise RemoteError(f"current points to {live!r}, expected {expected!r}",
                          host=remote.name, step="switch")  # fmt: skip
    return Switched(tuple(warnings), at)
