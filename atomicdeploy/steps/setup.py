"""setup: the directories every deploy needs, the lock, and what the host has now.

Done in one round trip: setup, lock and read state are one script.
"""

from __future__ import annotations

from dataclasses import replace

from .. import shell
from ..config import Config
from ..errors import LockHeld, RemoteError
from ..releases import HostState, parse_state
from ..remote import Remote
from .lock import describe_owner, owner_record


def begin(remote: Remote, cfg: Config, *, upload: bool) -> HostState:
    """Idempotent mkdirs, take the lock, read the state (with the host's rsync version
    when this run will `upload`).

    Refuses a real directory at `current` (it could not be swapped atomically) and
    a lock held by someone else (with who and since when).
    """
    # A dry run takes no lock: it only reads the state.
    read = shell.read_state(cfg.layout, rsync_version=upload)
    try:
        _, out = remote.run(script(cfg, upload=upload), "setup", stand_in=read)
    except RemoteError as exc:
        held = lock_held(exc, cfg)
        if held is None:
            raise
        raise held from exc
    return parse_state(out, shell.STATE_MARKERS)


def script(cfg: Config, *, upload: bool) -> str:
    """`begin`'s script: setup, lock, state."""
    layout = cfg.layout
    return shell.sequence(
        [
            ("setup", shell.setup(layout)),
            ("lock", shell.lock(layout, owner_record(cfg))),
            ("state", shell.read_state(layout, rsync_version=upload)),
        ]
    )


def lock_held(exc: RemoteError, cfg: Config) -> LockHeld | None:
    """If `script` failed on a lock someone else holds: the error that says who."""
    if exc.exit_status != shell.LOCK_HELD:
        return None
    # The held-lock branch prints the owner record on stdout.
    return LockHeld(
        f"locked by {describe_owner(exc.stdout or None)}:"
        f" if that deploy is dead, run `fab {cfg.run.stage} unlock`",
        host=exc.host,
        step="lock",
    )


def read_state(remote: Remote, cfg: Config, *, rsync_version: bool = False) -> HostState:
    """Live release, release directories with their logged states, and the lock owner."""
    script = shell.read_state(cfg.layout, rsync_version=rsync_version)
    _, out = remote.run(script, "state", read_only=True)
    return replace(parse_state(out, shell.STATE_MARKERS), deploy_path=cfg.host.deploy_path)
