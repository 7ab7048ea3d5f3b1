"""lock: one deploy or rollback at a time per host, taken atomically with mkdir."""

from __future__ import annotations

import json

from .. import commands
from ..config import Config
from ..errors import LockHeld, RemoteError
from ..remote import Remote


def owner_record(cfg: Config) -> str:
    run = cfg.run
    return json.dumps(
        {"user": run.user, "host": run.local_host, "pid": run.pid, "time": run.started,
         "token": run.token, "stage": run.stage},
        sort_keys=True,
    )  # fmt: skip


def describe_owner(raw: str | None) -> str:
    """`alice on laptop (pid 42) since 2026-11-22T10:15:00Z`, from the lock's owner record."""
    if not raw:
        return "an unknown deploy (no owner record yet)"
    try:
        data = json.loads(raw.splitlines()[0])
        return f"{data['user']} on {data['host']} (pid {data['pid']}) since {data['time']}"
    except (ValueError, KeyError, TypeError, IndexError):
        return raw.splitlines()[0][:200]


def lock(remote: Remote, cfg: Config) -> None:
    try:
        remote.run(commands.lock(cfg.layout, owner_record(cfg)), "lock")
    except RemoteError as exc:
        if exc.exit_status != commands.LOCK_HELD:
            raise
        # The held-lock branch prints the owner record on stdout.
        raise LockHeld(
            f"locked by {describe_owner(exc.stdout or None)}:"
            f" if that deploy is dead, run `fab {cfg.run.stage} unlock`",
            host=remote.name, step="lock",
        ) from exc  # fmt: skip


def unlock(remote: Remote, cfg: Config) -> None:
    """Release our own lock (matched by token), never someone else's."""
    remote.run(commands.unlock_own(cfg.layout, cfg.run.token), "unlock")


def force_unlock(remote: Remote, cfg: Config) -> str | None:
    """Remove whatever lock is held; return who held it."""
    _, out = remote.run(commands.force_unlock(cfg.layout), "unlock")
    return out.strip() or None
