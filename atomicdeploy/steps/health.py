"""health: after go-live, check each host answers as expected; else the stage rolls back."""

from __future__ import annotations

from .. import shell
from ..config import Config
from ..remote import Remote


def check(remote: Remote, cfg: Config) -> None:
    hc = cfg.host.healthcheck
    if hc is None:
        return
    remote.run(shell.health_check(hc.url, hc.status, hc.contains, hc.timeout), "health")
