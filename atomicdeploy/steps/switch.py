"""switch: the only way `current` ever changes, for deploy and rollback alike.

Go-live on one host is one round trip: swap `current`, point nginx at the release
and wait for its old workers, log, clear the opcache.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import commands
from ..config import Config
from ..errors import RemoteError
from ..remote import Remote
from . import nginx, opcache


def switch(remote: Remote, cfg: Config, release: str, log_lines: Sequence[str] = (),
           *, unlock: bool = False) -> list[str]:  # fmt: skip
    """Make `release` live on this host; return the warnings (e.g. opcache reset failed).

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
    warnings = [ln[len(commands.WARN_MARKER):] for ln in out.splitlines()
                if ln.startswith(commands.WARN_MARKER)]  # fmt: skip
    rest = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(commands.WARN_MARKER)]
    expected = layout.current_target(release)
    live = rest[-1].strip() if rest else ""
    if live != expected:
        raise RemoteError(f"current points to {live!r}, expected {expected!r}",
                          host=remote.name, step="switch")  # fmt: skip
    return warnings
