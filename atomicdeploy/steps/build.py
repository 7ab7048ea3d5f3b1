"""build: everything between upload and a complete release, with the user's hooks.

Without Python hooks this is one round trip: shared links, writable dirs, vendors
and the other hook commands, the nginx check, warm-up, flushing the release to disk
and the `complete` mark.
"""

from __future__ import annotations

from .. import shell
from ..config import Config
from ..hooks import Hooks
from ..releases import COMPLETE
from ..remote import Remote
from . import hook, nginx, release, shared, upload, warmup, writable


def begin(remote: Remote, cfg: Config, hooks: Hooks) -> None:
    """Create the release directory, with the hooks around it and before the upload."""
    hook.run_plan(
        remote,
        cfg,
        [
            *hook.parts(cfg, "before_release", hooks),
            ("release", release.create_script(cfg)),
            *hook.parts(cfg, "after_release", hooks),
            *hook.parts(cfg, "before_upload", hooks),
        ],
        "release",
    )


def build(remote: Remote, cfg: Config, hooks: Hooks | None = None) -> None:
    """Fill the release from the upload cache, link shared paths, make dirs writable, run
    vendors and hooks, check nginx takes the new include, warm the release up through
    FastCGI, then log it complete."""
    hooks = hooks or Hooks()

    def around(step: str, *middle: hook.Part) -> list[hook.Part]:
        return [
            *hook.parts(cfg, f"before_{step}", hooks),
            *middle,
            *hook.parts(cfg, f"after_{step}", hooks),
        ]

    plan = [
        ("upload", upload.fill_script(cfg)),
        *hook.parts(cfg, "after_upload", hooks),
        *around("shared", ("shared", shared.script(cfg))),
        *around("writable", ("writable", writable.script(cfg))),
        *around("vendors"),  # the composer recipe runs at after_vendors
        ("nginx", nginx.check_script(cfg)),
        *around("warmup", ("warmup", warmup.script(cfg))),
        # `once` commands here (migrations) wait for the barrier: see `Deploy.once` in deploying.py.
        *hook.parts(cfg, "before_switch", hooks, once=False),
        ("sync", shell.sync_release(cfg.release_path) if cfg.host.sync_release else None),
        ("log", release.mark_script(cfg, cfg.release, COMPLETE)),
    ]
    hook.run_plan(remote, cfg, plan, "build")


def after_switch(remote: Remote, cfg: Config, hooks: Hooks) -> None:
    """Once every host is live and healthy: `after_switch`, then `before_cleanup`."""
    hook.run_plan(
        remote,
        cfg,
        [*hook.parts(cfg, "after_switch", hooks), *hook.parts(cfg, "before_cleanup", hooks)],
        "hook after_switch",
    )


def after_cleanup(remote: Remote, cfg: Config, hooks: Hooks) -> None:
    hook.run_plan(remote, cfg, hook.parts(cfg, "after_cleanup", hooks), "hook after_cleanup")
