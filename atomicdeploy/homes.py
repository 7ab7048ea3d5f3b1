"""`deploy_path: ~/app`: the SSH user's home, found on the host when a run starts.

Deployer users write `~/{{application}}`. The home is only known on the host, so every run
asks each such host once (`$HOME`, through the same connection settings), and the run works
with the absolute path from then on: it is what `releases` and `status` show.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import replace

from fabric import Config as FabricConfig

from .errors import ConfigError, FleetError
from .inventory import HostConfig
from .remote import Remote
from .report import Reporter
from .runner import Fleet

_HOME = "printf '%s\\n' \"$HOME\""


def _resolved(host: HostConfig, home: str) -> HostConfig:
    home = home.strip()
    if not home.startswith("/") or "\n" in home or home == "/":
        raise ConfigError(f"host {host.name}: the SSH user's home {home!r} is no absolute path")
    path = posixpath.normpath(home + host.deploy_path[1:])
    nginx = host.nginx
    if nginx is not None and nginx.root_file.startswith("~/"):
        nginx = replace(nginx, root_file=posixpath.normpath(home + nginx.root_file[1:]))
    return replace(host, deploy_path=path, nginx=nginx)


def resolve(
    hosts: Sequence[HostConfig], reporter: Reporter, fabric_config: FabricConfig | None
) -> tuple[HostConfig, ...]:
    """The hosts, with every `~/` deploy path made absolute (one command per such host)."""
    homed = [h for h in hosts if h.deploy_path.startswith("~/")]
    if not homed:
        return tuple(hosts)
    fleet = Fleet(homed, reporter, fabric_config=fabric_config)
    try:
        homes, failures = fleet.each(
            lambda r: _home(r), [h.name for h in homed], phase="home", wide=True
        )
    finally:
        fleet.close()
    if failures:
        raise FleetError(f"could not find the home of {len(failures)} host(s)", failures)
    return tuple(_resolved(h, homes[h.name]) if h.name in homes else h for h in hosts)


def _home(remote: Remote) -> str:
    return remote.run(_HOME, "home", read_only=True)[1]
