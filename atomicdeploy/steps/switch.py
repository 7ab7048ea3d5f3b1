"""switch: the only way `current` ever changes, for deploy and rollback alike."""

from __future__ import annotations

from collections.abc import Sequence

from .. import commands
from ..config import Config
from ..errors import RemoteError
from ..remote import Remote


def switch(remote: Remote, cfg: Config, release: str, log_lines: Sequence[str] = (),
           *, unlock: bool = False) -> None:  # fmt: skip
    """Swap `current` to `release` atomically and log it, in one round trip.

    `readlink` then reports what is live, and we check it is what we asked for.
    With `unlock`, our lock is released in the same round trip, whatever happened.
    """
    layout = cfg.layout
    script = commands.sequence([
        ("switch", commands.switch(layout, release)),
        *[("log", commands.append_log(layout, line)) for line in log_lines],
    ])  # fmt: skip
    if unlock:
        script = commands.then_unlock(script, layout, cfg.run.token)
    _, out = remote.run(script, "switch")
    expected = layout.current_target(release)
    if out.strip() != expected:
        raise RemoteError(f"current points to {out.strip()!r}, expected {expected!r}",
                          host=remote.name, step="switch")  # fmt: skip
