"""switch: the only way `current` ever changes, for deploy and rollback alike."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..errors import RemoteError
from ..remote import Remote


def switch(remote: Remote, cfg: Config, release: str) -> None:
    """Swap `current` to `release` atomically, then check what `readlink` says is live."""
    _, out = remote.run(commands.switch(cfg.layout, release), "switch")
    expected = cfg.layout.current_target(release)
    if out.strip() != expected:
        raise RemoteError(f"current points to {out.strip()!r}, expected {expected!r}",
                          host=remote.name, step="switch")  # fmt: skip
