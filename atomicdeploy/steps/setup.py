"""setup: the directories every deploy needs, and what the host has now."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..releases import HostState, parse_state
from ..remote import Remote


def setup(remote: Remote, cfg: Config) -> None:
    """Idempotent mkdirs. Refuses a real directory at `current`, which could not be swapped."""
    remote.run(commands.setup(cfg.layout), "setup")


def read_state(remote: Remote, cfg: Config) -> HostState:
    """Live release, release directories with their logged states, and the lock owner."""
    _, out = remote.run(commands.read_state(cfg.layout), "state")
    return parse_state(out, commands.STATE_MARKERS)
