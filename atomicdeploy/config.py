"""The one frozen config a step receives: the host's settings plus this run's facts."""

from __future__ import annotations

from dataclasses import dataclass

from .inventory import HostConfig
from .layout import Layout


@dataclass(frozen=True)
class RunInfo:
    """Facts of one deploy or rollback, computed once on the controller for every host."""

    stage: str
    user: str
    local_host: str
    pid: int
    started: str  # ISO 8601, UTC
    token: str  # identifies our lock, so we only ever release our own
    source: str = ""  # absolute local directory uploaded as the release
    revision: str = ""


@dataclass(frozen=True)
class Config:
    """What every step gets: `(remote, cfg)`. Steps read it and never change it."""

    host: HostConfig
    run: RunInfo
    release: str = ""  # the release this run builds or switches to
    previous: str | None = None  # the release that was live on this host before
    primary: bool = False  # the run's first host: where `once` hooks without roles run
    # The run's hosts in order, with their roles: where `once` hooks with roles run.
    peers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    host_rsync: str = ""  # the host's `rsync --version` line, read with the state

    def runs_once(self, roles: tuple[str, ...]) -> bool:
        """Whether a `once` command for `roles` runs here: on the run's first host that has
        one of them (no roles: the run's first host)."""
        if not roles:
            return self.primary
        first = next((name for name, have in self.peers if set(have) & set(roles)), None)
        return first == self.host.name

    @property
    def layout(self) -> Layout:
        return Layout(self.host.deploy_path)

    @property
    def release_path(self) -> str:
        return self.layout.release(self.release)

    @property
    def previous_path(self) -> str | None:
        return self.layout.release(self.previous) if self.previous else None
