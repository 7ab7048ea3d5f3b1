"""shared: link shared_dirs and shared_files from `shared/` into the release."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..remote import Remote


def link_shared(remote: Remote, cfg: Config) -> None:
    """One round trip for all items; a shared file missing everywhere fails, naming it."""
    scripts = [commands.link_shared_dir(cfg.layout, cfg.release, d) for d in cfg.host.shared_dirs]
    scripts += [
        commands.link_shared_file(cfg.layout, cfg.release, f) for f in cfg.host.shared_files
    ]
    if scripts:
        remote.run(" && ".join(f"{{ {s}; }}" for s in scripts), "shared")
