"""shared: link shared_dirs and shared_files from `shared/` into the release."""

from __future__ import annotations

from .. import shell
from ..config import Config


def script(cfg: Config) -> str | None:
    """All items in one script; a shared file missing everywhere fails, naming it."""
    parts = [shell.link_shared_dir(cfg.layout, cfg.release, d) for d in cfg.host.shared_dirs]
    parts += [
        shell.link_shared_file(cfg.layout, cfg.release, f, secret=f in cfg.host.secret_files)
        for f in cfg.host.shared_files
    ]
    return shell.all_of(parts)
