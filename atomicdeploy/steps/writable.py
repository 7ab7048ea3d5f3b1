"""writable: let the web server write to writable_dirs (chmod, acl, chown or skip)."""

from __future__ import annotations

from .. import commands
from ..config import Config


def script(cfg: Config) -> str | None:
    host = cfg.host
    return commands.make_writable(
        cfg.layout, cfg.release, host.writable_dirs, host.writable_mode,
        chmod_mode=host.writable_chmod_mode, http_user=host.http_user,
        recursive=host.writable_recursive, use_sudo=host.writable_use_sudo,
    )  # fmt: skip
