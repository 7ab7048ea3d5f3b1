"""cleanup: keep `keep_releases` complete releases; delete failed and surplus ones."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..releases import cleanup_victims
from ..remote import Remote
from .setup import read_state


def cleanup(remote: Remote, cfg: Config) -> list[str]:
    """Return the names removed. Never the live release, never the rollback target."""
    state = read_state(remote, cfg)
    victims = cleanup_victims(list(state.releases), cfg.host.keep_releases, state.current)
    if victims:
        remote.run(commands.remove_releases(cfg.layout, victims), "cleanup")
    return victims
