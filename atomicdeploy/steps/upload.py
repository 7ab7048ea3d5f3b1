"""upload: rsync the local source into the new release, incrementally."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..remote import Remote, RsyncStats


def upload(remote: Remote, cfg: Config) -> RsyncStats:
    """Send only what changed: unchanged files are copied on the host from the live release."""
    layout = cfg.layout
    copy_dest = layout.release(cfg.previous) if cfg.previous else None
    argv = commands.rsync_argv(
        cfg.run.source,
        remote.conn.host,
        layout.release(cfg.release),
        ssh=remote.ssh_argv(),
        exclude=cfg.host.exclude,
        copy_dest=copy_dest,
        hardlinks=cfg.host.upload_hardlinks,
        timeout=cfg.host.command_timeout,
    )
    return remote.rsync(argv, "upload")
