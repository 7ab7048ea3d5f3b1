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
    primary: bool = False  # the stage's first host: where `once` hooks run
    host_rsync: str = ""  # the host's `rsync --version` line, read with the state

    @property
    def layout(self) -> Layout:
        return Layout(self.host.deploy_path)

    @property
    def release_path(self) -> str:
        return self.layout.release(self.release)

    @property
    def previous_path(self) -> str | None:
        return self.layout.release(self.previous) if self.previous else None
