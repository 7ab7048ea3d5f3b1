"""upload: rsync the local source to the host, incrementally; the build's round trip then
fills the release from it.

By default rsync updates `.dep/upload`, the host's copy of the last uploaded source,
and the release is copied from it with `cp -a`: rsync compares 2,000 unchanged files
by size and time and writes only what changed, and `cp` makes the release's own
copies. With `upload_hardlinks`, rsync writes the release directly and hardlinks
unchanged files from the live release (`--link-dest`), which checks each file's
attributes before sharing its inode.
"""

from __future__ import annotations

import functools
import subprocess

from .. import shell
from ..config import Config
from ..remote import Remote, RsyncStats


@functools.cache
def local_rsync_version() -> str:
    """This machine's `rsync --version` first line ('' without rsync: the upload says so)."""
    try:
        out = subprocess.run(
            ["rsync", "--version"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.split("\n", 1)[0]


def upload(remote: Remote, cfg: Config) -> RsyncStats:
    """Send only what changed; the release gets the rest from the host's own copies."""
    layout = cfg.layout
    hardlinks = cfg.host.upload_hardlinks
    # The first upload into an empty cache (a new host, or after an upgrade) copies
    # unchanged files from the live release on the host instead of sending them.
    copy_dest = layout.release(cfg.previous) if cfg.previous else None
    argv = shell.rsync_argv(
        cfg.run.source,
        remote.conn.host,
        layout.release(cfg.release) if hardlinks else layout.upload_cache,
        ssh=shell.tunnel_rsh(),
        exclude=cfg.host.exclude,
        copy_dest=copy_dest,
        hardlinks=hardlinks,
        timeout=cfg.host.command_timeout,
        # A tree exported from git has the commit's time on every file (whole seconds):
        # two commits made within one second would look unchanged to the quick check. A
        # built tree is new on every build, so every file of it would look changed. Both
        # are compared by content instead.
        exact_times=shell.rsync_exact_times(cfg.host_rsync)
        and shell.rsync_exact_times(local_rsync_version())
        and not cfg.run.revision
        and not cfg.host.build,
    )
    return remote.rsync(argv, "upload")


def fill_script(cfg: Config) -> str | None:
    """The release's files from the upload cache (None with `upload_hardlinks`, whose
    rsync wrote the release itself). It is the first part of the build's round trip."""
    return None if cfg.host.upload_hardlinks else shell.fill_release(cfg.layout, cfg.release)
