"""lock: one deploy or rollback at a time per host, taken atomically with mkdir.

Taking the lock is part of `setup.begin`; this module describes owners and releases locks.
"""

from __future__ import annotations

import json

from .. import shell
from ..config import Config
from ..remote import Remote


def owner_record(cfg: Config) -> str:
    run = cfg.run
    return json.dumps(
        {
            "user": run.user,
            "host": run.local_host,
            "pid": run.pid,
            "time": run.started,
            "token": run.token,
            "stage": run.stage,
        },
        sort_keys=True,
    )


def describe_owner(raw: str | None) -> str:
    """`alice on laptop (pid 42) since 2026-11-22T10:15:00Z`, from the lock's owner record."""
    if not raw:
        return "an unknown deploy (no owner record yet)"
    try:
        data = json.loads(raw.splitlines()[0])
        return f"{data['user']} on {data['host']} (pid {data['pid']}) since {data['time']}"
    except (ValueError, KeyError, TypeError, IndexError):
        return raw.splitlines()[0][:200]


def unlock(remote: Remote, cfg: Config) -> None:
    """Release our own lock (matched by token), never someone else's."""
    remote.run(shell.unlock_own(cfg.layout, cfg.run.token), "unlock")


def force_unlock(remote: Remote, cfg: Config) -> str | None:
    """Remove whatever lock is held; return who held it."""
    _, out = remote.run(shell.force_unlock(cfg.layout), "unlock")
    return out.strip() or None
