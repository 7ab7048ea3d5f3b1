"""release: create the new release directory and record every state change in the log."""

from __future__ import annotations

from datetime import UTC, datetime

from .. import shell
from ..config import Config
from ..releases import BUILDING, LogEntry
from ..remote import Remote


def log_line(cfg: Config, release: str, state: str, note: str = "") -> str:
    """One log line. The run's revision belongs to the release this run built only: a
    revert's line for the old release must not make it look like the new commit."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    revision = cfg.run.revision if release == cfg.release else ""
    return LogEntry(
        release=release, state=state, time=now, user=cfg.run.user, revision=revision, note=note
    ).render()


def create_script(cfg: Config) -> str:
    """mkdir the release (an existing one is an error) and log it as building."""
    return shell.create_release(cfg.layout, cfg.release, log_line(cfg, cfg.release, BUILDING))


def mark_script(cfg: Config, release: str, state: str, note: str = "") -> str:
    return shell.append_log(cfg.layout, log_line(cfg, release, state, note))


def remove(remote: Remote, cfg: Config, state: str, note: str = "") -> None:
    """Remove the unactivated release and log why; refuses if it is somehow live."""
    line = log_line(cfg, cfg.release, state, note)
    remote.run(shell.remove_release(cfg.layout, cfg.release, line), "remove")
