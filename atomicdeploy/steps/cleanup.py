"""cleanup: keep `keep_releases` complete releases; delete failed and surplus ones."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..releases import LIVE, HostState, LogEntry, cleanup_victims, fold
from ..remote import Remote


def victims_after_go_live(state: HostState, cfg: Config) -> list[str]:
    """Decide locally from the state read under our lock: nothing else changed it since."""
    names = [r.name for r in state.releases] + [cfg.release]
    entries = [*state.entries, LogEntry(release=cfg.release, state=LIVE, time="")]
    infos = fold(names, entries, cfg.release)
    return cleanup_victims(infos, cfg.host.keep_releases, cfg.release)


def cleanup_and_unlock(remote: Remote, cfg: Config, victims: list[str]) -> None:
    """Remove `victims` (never the live one: checked again on the host), then unlock."""
    script = commands.remove_releases(cfg.layout, victims) if victims else "true"
    remote.run(commands.then_unlock(script, cfg.layout, cfg.run.token), "cleanup")
