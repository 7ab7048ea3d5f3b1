"""The inventory's contract: every key a host may set, its check, default and meaning,
written once, as the fields of `HostConfig`; `KEYS` is derived from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..hooks import HookCommand
from ..recipes import COMPOSER_OPTIONS
from .checks import (
    WRITABLE_MODES,
    HealthCheck,
    NginxConfig,
    OpcacheConfig,
    _address,
    _bool,
    _choice,
    _commands,
    _deploy_path,
    _healthcheck,
    _hooks,
    _int,
    _keep,
    _nginx,
    _opcache,
    _recipes,
    _rel_paths,
    _repository,
    _roles,
    _str,
    _str_list,
    _str_map,
    _umask,
    _url_paths,
    _urls,
    _user,
)

_REQUIRED: Any = object()


def key(
    check: Callable[[Any], Any],
    default: Any,
    help: str,
    *,
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
    name: str = "",
) -> Any:
    """A HostConfig field that is also an inventory key: its check and help ride in the
    field's metadata. `_REQUIRED` fields have no default (the loader fills or refuses them);
    `secret` ones are kept out of reprs; `name` is the key's name in the inventory when it
    is not the field's (Deployer's `bin/php` is the field `bin_php`)."""
    meta = {"check": check, "help": help, "name": name}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    if default is _REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class HostConfig:
    """Everything atomicdeploy knows about one host, validated. Frozen: passed, never changed."""

    name: str
    deploy_path: str = key(_deploy_path, _REQUIRED, "absolute directory on the host (required)")
    hostname: str = key(
        _address, _REQUIRED, "address or ssh_config alias (default: the host's name)"
    )
    application: str = key(_str, "", "name of the application, for messages")
    source: str = key(
        _str, ".", "local directory uploaded as each release (with repository: one of the commit)"
    )
    repository: str = key(
        _repository,
        "",
        "git URL, user@host:path or local path the release is exported from",
        secret=True,
    )
    branch: str = key(_str, "", "branch to deploy from repository (default: the remote's default)")
    build: tuple[str, ...] = key(
        _commands, (), "commands run once on this machine in the exported tree before any host"
    )
    exclude: tuple[str, ...] = key(_str_list, (".git",), "rsync patterns left out of the upload")
    upload_hardlinks: bool = key(_bool, False, "hardlink unchanged files from the live release")
    sync_release: bool = key(_bool, True, "flush the release to disk before it can go live")
    keep_releases: int = key(_keep, 5, "complete releases kept by cleanup (-1: all)")
    shared_dirs: tuple[str, ...] = key(
        _rel_paths, (), "directories linked from shared/ into each release"
    )
    shared_files: tuple[str, ...] = key(
        _rel_paths, (), "files linked from shared/ into each release"
    )
    secret_files: tuple[str, ...] = key(
        _rel_paths, (".env",), "shared files created 0600 when first copied from a release"
    )
    umask: str = key(_umask, "022", "umask of every command atomicdeploy runs on the host")
    writable_dirs: tuple[str, ...] = key(
        _rel_paths, (), "directories made writable for the web server"
    )
    writable_mode: str = key(
        _choice(*WRITABLE_MODES), "chmod", "chmod, acl, chown, chgrp, sticky or skip"
    )
    writable_chmod_mode: str = key(_str, "ug+rwX", "mode given to chmod in chmod mode")
    writable_recursive: bool = key(_bool, True, "apply the writable mode recursively")
    http_user: str = key(_user, "", "web server user, for acl and chown modes")
    http_group: str = key(_user, "", "web server group, for chgrp and sticky modes")
    writable_use_sudo: bool = key(_bool, False, "run chown through `sudo -n` (never a prompt)")
    parallel: int = key(_int(1, 1000), 10, "hosts worked on at the same time")
    port: int | None = key(_int(1, 65535), None, "SSH port (default: from ssh_config, else 22)")
    remote_user: str | None = key(_user, None, "SSH user (default: from ssh_config, else you)")
    identity_file: str | None = key(_str, None, "SSH private key")
    ssh_config: str | None = key(_str, None, "OpenSSH config file to read instead of ~/.ssh/config")
    known_hosts: str = key(
        _str, "~/.ssh/known_hosts", "host keys: new ones are recorded, changed ones refused"
    )
    connect_timeout: int = key(_int(1, 3600), 10, "seconds to wait for SSH to connect")
    server_alive_interval: int = key(
        _int(0, 3600), 15, "seconds between checks that a host still answers (0: never)"
    )
    server_alive_count_max: int = key(
        _int(1, 100), 3, "checks without an answer before a host is given up"
    )
    command_timeout: int = key(
        _int(1, 86400), 900, "seconds a remote command (or a stalled upload) may take"
    )
    forward_agent: bool = key(_bool, False, "forward your SSH agent to the host")
    roles: tuple[str, ...] = key(
        _roles, (), "role names (`[web, worker]`): --roles selects by them, hooks run by them"
    )
    labels: Mapping[str, str] = key(
        _str_map, None, "labels; labels.stage makes the stage task", factory=dict
    )
    nginx: NginxConfig | None = key(
        _nginx, None, "point nginx at each release through a generated include"
    )
    opcache: OpcacheConfig = key(
        _opcache, OpcacheConfig(), "how to clear php-fpm's opcache after go-live"
    )
    warmup: tuple[str, ...] = key(
        _url_paths, (), "paths requested through php-fpm on the new release first"
    )
    warmup_script: str = key(_str, "index.php", "front controller used for warm-up paths")
    healthcheck: HealthCheck | None = key(
        _healthcheck, None, "checked on each host after go-live; a failure rolls the stage back"
    )
    hooks: Mapping[str, tuple[HookCommand, ...]] = key(
        _hooks, None, "shell commands run in the release at hook points", factory=dict
    )
    recipes: tuple[str, ...] = key(
        _recipes, (), "framework recipes to run: composer, laravel, symfony"
    )
    composer: str = key(_str, "composer", "composer command on the host, for the composer recipe")
    composer_options: str = key(_str, COMPOSER_OPTIONS, "arguments of the composer recipe")
    bin_php: str = key(_str, "php", "PHP binary on the host: {{bin/php}}, recipes", name="bin/php")
    bin_composer: str = key(
        _str, "composer", "composer binary on the host: {{bin/composer}}", name="bin/composer"
    )
    webhook: tuple[str, ...] = key(
        _urls, (), "Slack-compatible webhook URL(s): start, success, failure of a run", secret=True
    )
    secrets: Mapping[str, str] = key(
        _str_map,
        None,
        "values masked in every log line; hooks read cfg.host.secrets",
        factory=dict,
        secret=True,
    )

    @property
    def stage(self) -> str | None:
        return self.labels.get("stage")


@dataclass(frozen=True)
class Key:
    check: Callable[[Any], Any]
    default: Any
    help: str
    field: str  # HostConfig's field for this key


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None  # required: the loader fills it (hostname) or refuses its absence


# The contract: every key an inventory may set, at `config:` or per host.
KEYS: dict[str, Key] = {
    f.metadata["name"] or f.name: Key(f.metadata["check"], _default(f), f.metadata["help"], f.name)
    for f in fields(HostConfig)
    if f.metadata
}


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[HostConfig, ...]

    @property
    def stages(self) -> dict[str, tuple[str, ...]]:
        """Stage name -> host names, in inventory order."""
        out: dict[str, list[str]] = {}
        for host in self.hosts:
            if host.stage:
                out.setdefault(host.stage, []).append(host.name)
        return {k: tuple(v) for k, v in out.items()}

    def stage(self, name: str) -> tuple[HostConfig, ...]:
        hosts = tuple(h for h in self.hosts if h.stage == name)
        if not hosts:
            known = ", ".join(sorted(self.stages)) or "none"
            raise ConfigError(f"{self.path.name}: stage {name!r} has no hosts (stages: {known})")
        return hosts
