"""cleanup: keep `keep_releases` complete releases; delete failed and surplus ones."""

from __future__ import annotations

from .. import shell
from ..config import Config
from ..errors import AtomicDeployError
from ..layout import is_release_name
from ..releases import LIVE, HostState, LogEntry, cleanup_victims, fold
from ..remote import Remote
from . import lock


def victims_after_go_live(state: HostState, cfg: Config) -> tuple[list[str], list[str]]:
    """(releases to remove, names left alone), decided locally from the state read under
    our lock: nothing else changed it since.

    A logged name that is no plain directory name (`-x`, `..`) was not written by us: it
    is left alone (and reported), so that removing the others, and the unlock sent with
    them, still happen.
    """
    names = [r.name for r in state.releases] + [cfg.release]
    entries = [*state.entries, LogEntry(release=cfg.release, state=LIVE, time="")]
    infos = fold(names, entries, cfg.release, state.foreign)
    victims = cleanup_victims(infos, cfg.host.keep_releases, cfg.release)
    odd = [n for n in victims if not is_release_name(n)]
    return [n for n in victims if n not in odd], odd


def cleanup_and_unlock(remote: Remote, cfg: Config, victims: list[str], state: HostState) -> None:
    """Remove `victims` (never the live one: checked again on the host), compact the log
    if it has grown long, then unlock.

    The unlock rides in the same script; should the script itself be refused (a name the
    release-name rules reject), the lock is still released before the error goes up.
    """
    try:
        script = _script(cfg, victims, state)
    except (AtomicDeployError, ValueError):
        lock.unlock(remote, cfg)
        raise
    remote.run(shell.then_unlock(script, cfg.layout, cfg.run.token), "cleanup")


def _script(cfg: Config, victims: list[str], state: HostState) -> str:
    parts = [shell.remove_releases(cfg.layout, victims)] if victims else []
    if len(state.entries) > shell.LOG_COMPACT_AT:
        kept = {r.name for r in state.releases} | {cfg.release}
        parts.append(shell.compact_log(cfg.layout, sorted(kept - set(victims))))
    return shell.all_of(parts) or "true"
