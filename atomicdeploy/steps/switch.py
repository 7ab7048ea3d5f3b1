"""switch: the only way `current` ever changes, for deploy and rollback alike.

Go-live on one host is one round trip: swap `current`, point nginx at the release
and wait for its old workers, log, clear the opcache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import commands
from ..config import Config
from ..errors import RemoteError
from ..remote import Remote
from . import nginx, opcache


@dataclass(frozen=True)
class Switched:
    warnings: tuple[str, ...]  # e.g. "opcache reset (fcgi) failed: ..."
    at: float | None  # the host's clock (epoch seconds) right after the rename


def switch(remote: Remote, cfg: Config, release: str, log_lines: Sequence[str] = (),
           *, unlock: bool = False) -> Switched:  # fmt: skip
    """Make `release` live on this host.

    `readlink` then reports what is live, and we check it is what we asked for.
    With `unlock`, our lock is released in the same round trip, whatever happened.
    """
    layout = cfg.layout
    script = commands.go_live(
        layout, release, log_lines=log_lines,
        nginx=nginx.go_live_parts(cfg, release), opcache=opcache.script(cfg),
    )  # fmt: skip
    if unlock:
        script = commands.then_unlock(script, layout, cfg.run.token)
    _, out = remote.run(script, "switch")
    warnings, rest, at = [], [], None
    for line in out.splitlines():
        if line.startswith(commands.WARN_MARKER):
            warnings.append(line[len(commands.WARN_MARKER):])
        elif line.startswith(commands.SWITCHED_MARKER):
            try:
                at = float(line[len(commands.SWITCHED_MARKER):])
            except ValueError:
                at = None
        elif line.strip():
            rest.append(line.strip())
    expected = layout.current_target(release)
    live = rest[-1] if rest else ""
    if live != expected:
        raise RemoteError(f"current points to {live!r}, expected {expected!r}",
                          host=remote.name, step="switch")  # fmt: skip
    return Switched(tuple(warnings), at)
