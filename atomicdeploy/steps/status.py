"""status: what each host serves, read without the lock and without changing anything."""

from __future__ import annotations

from dataclasses import dataclass

from .. import shell
from ..config import Config
from ..releases import HostState, parse_state
from ..remote import Remote
from . import nginx


@dataclass(frozen=True)
class HostStatus:
    state: HostState
    revision: str  # of the live release, from the releases log ("" if unknown)
    nginx: str  # "ok", "points elsewhere", "missing", or "not managed"


def read(remote: Remote, cfg: Config) -> HostStatus:
    root_file = cfg.host.nginx.root_file if cfg.host.nginx else None
    _, out = remote.run(shell.read_status(cfg.layout, root_file), "status", read_only=True)
    text, _, include = out.partition(shell.NGINX_MARKER + "\n")
    state = parse_state(text, shell.STATE_MARKERS)
    live = state.get(state.current) if state.current else None
    return HostStatus(state, live.revision if live else "", _nginx_verdict(cfg, state, include))


def _nginx_verdict(cfg: Config, state: HostState, include: str) -> str:
    if cfg.host.nginx is None:
        return "not managed"
    if not include.strip():
        return "missing"
    if state.current and include.strip() == nginx.include_text(cfg, state.current).strip():
        return "ok"
    return "points elsewhere"
