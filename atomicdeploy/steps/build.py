"""build: everything between upload and a complete release, in one round trip."""

from __future__ import annotations

from .. import commands
from ..config import Config
from ..releases import COMPLETE
from ..remote import Remote
from . import nginx, release, shared, warmup, writable


def build(remote: Remote, cfg: Config) -> None:
    """Link shared paths, make dirs writable, check nginx takes the new include,
    warm the new release up through FastCGI, then log the release complete."""
    remote.run(
        commands.sequence([
            ("shared", shared.script(cfg)),
            ("writable", writable.script(cfg)),
            ("nginx", nginx.check_script(cfg)),
            ("warmup", warmup.script(cfg)),
            ("log", release.mark_script(cfg, cfg.release, COMPLETE)),
        ]),
        "build",
    )  # fmt: skip
