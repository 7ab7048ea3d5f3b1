"""Load and validate `inventory.yml` into frozen `HostConfig` values.

Pure apart from reading the file.

The format is Deployer's YAML hosts format: a `config:` map of defaults and a
`hosts:` map whose entries may override any key. Every mistake is found here,
before any host is contacted, and reported as one line naming the key and host.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean
from .hooks import FAILURE, POINTS, HookCommand, unknown_point
from .layout import check_relative_path
from .recipes import COMPOSER_OPTIONS, RECIPES
from .secrets import redact_url_passwords
from .shell import nginx_set_only

MAX_INVENTORY_BYTES = 1_000_000
WRITABLE_MODES = ("chmod", "acl", "chown", "skip")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# DNS names, IPv4 and IPv6 addresses (with a %zone), ssh_config aliases. Not spaces or
# newlines, nor ',' '*' '?' '!' '[' ']': in a known_hosts line those would name other
# hosts (a pattern, a list) for the key recorded on first use.
# (A user goes in remote_user, not in front of the name.)
_ADDRESS = re.compile(r"^(?=.*[A-Za-z0-9])[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*$")
_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


# --- value checkers: each returns the clean value or raises ValueError(reason) ---------------


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_type_name(value)}")
    return value


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {_type_name(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, not {value}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_type_name(value)}")
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, not {_type_name(value)}")
    return tuple(value)


def _rel_paths(value: Any) -> tuple[str, ...]:
    items = _str_list(value)
    try:
        return tuple(check_relative_path(v, "path") for v in items)
    except ConfigError as exc:
        raise ValueError(exc.message) from None


def _umask(value: Any) -> str:
    """An octal umask as a string: YAML reads an unquoted 022 as the number 18."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"must be quoted, e.g. '022', not the number {value}")
    value = _str(value)
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(f"must be an octal umask such as '022' or '027', not {value!r}")
    return value


def _str_map(value: Any) -> Mapping[str, str]:
    """`labels:` and `secrets:`: names to strings (numbers become strings, booleans do not)."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ValueError("must be a map of names to strings")
    return {k: str(v) for k, v in value.items()}


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    return check


def _address(value: Any) -> str:
    value = _str(value)
    if not _ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not a host name, IP address or ssh_config alias"
                         " (letters, digits, '.', '-', '_', ':', '%')")  # fmt: skip
    return value


def _user(value: Any) -> str:
    value = _str(value)
    if value and not _USER_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid user name")
    return value


def _nginx_template(value: Any) -> str:
    """Checked now, not at go-live: only {public_path}, {release_path} and {release}, and
    only `set` lines (root's nginx reads what the deploy user writes: see nginx_set_only)."""
    value = _str(value)
    try:
        sample = value.format(public_path="/p", release_path="/r", release="R")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"may only use {{public_path}}, {{release_path}} and {{release}}"
                         f" (and {{{{ }}}} for a literal brace): {exc}") from None
    refused = nginx_set_only(sample)
    if refused:
        raise ValueError(f"may only hold `set` lines: {refused}")
    return value


def _http_url(value: Any) -> str:
    value = _str(value)
    if not value.startswith(("http://", "https://")):
        shown = redact_url_passwords(value)[:60]
        raise ValueError(f"must be an http:// or https:// URL, not {shown!r}")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters (write them %-encoded)")
    return value


def _deploy_path(value: Any) -> str:
    value = _str(value)
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, not {value!r}")
    if "\0" in value or "\n" in value:
        raise ValueError("must not contain NUL or newline characters")
    norm = posixpath.normpath(value)
    if norm == "/" or norm == "//":
        raise ValueError("must not be / itself")
    if ".." in value.split("/"):
        raise ValueError(f"must not contain '..': {value!r}")
    return norm


def _type_name(value: Any) -> str:
    names = {dict: "a map", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "empty"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


OPCACHE_STRATEGIES = ("fcgi", "cachetool", "http", "fpm-reload", "none")


@dataclass(frozen=True)
class NginxConfig:
    """Point nginx at the release's absolute path through a generated include."""

    root_file: str = ""  # default: {deploy_path}/root_dir.nginx.conf
    public_dir: str = "public"
    # {public_path}, {release_path} and {release} are filled in per release.
    template: str = "set $root_dir {public_path};"
    test: str = "sudo -n nginx -t"
    reload: str = "sudo -n nginx -s reload"
    pid_file: str = "/run/nginx.pid"
    reload_timeout: int = 60  # seconds to wait for the old workers to finish


@dataclass(frozen=True)
class OpcacheConfig:
    # Default: `fcgi` when a socket is set, else `none` (see README: measured, and why).
    strategy: str = "none"
    socket: str = ""  # php-fpm's socket path or host:port
    cachetool: str = "cachetool"  # binary (or `php /path/cachetool.phar`)
    url: str = ""  # http strategy
    reload: str = "sudo -n systemctl reload php8.2-fpm"  # fpm-reload strategy


@dataclass(frozen=True)
class HealthCheck:
    url: str
    status: int = 200
    contains: str = ""  # expected text in the response: a header line or the body
    timeout: int = 10


def _sub(kind: type, checks: dict[str, Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """Validate a nested map (e.g. `nginx:`) into a frozen dataclass."""

    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"must be a map, not {_type_name(value)}")
        out = {}
        for key, item in value.items():
            if key not in checks:
                raise ValueError(f"has an unknown key {key!r}{did_you_mean(key, checks)}")
            if item is None:
                continue
            try:
                out[key] = checks[key](item)
            except ValueError as exc:
                raise ValueError(f".{key} {exc}") from None
        try:
            return kind(**out)
        except TypeError:
            missing = [f.name for f in fields(kind) if f.name not in out
                       and f.default is MISSING and f.default_factory is MISSING]  # fmt: skip
            raise ValueError(f"needs {', '.join(missing)}") from None

    return check


def _opcache(value: Any) -> OpcacheConfig:
    cfg = _sub(OpcacheConfig, {
        "strategy": _choice(*OPCACHE_STRATEGIES), "socket": _str, "cachetool": _str,
        "url": _http_url, "reload": _str,
    })(value)  # fmt: skip
    if "strategy" not in value and cfg.socket:
        cfg = replace(cfg, strategy="fcgi")
    if cfg.strategy in ("fcgi", "cachetool") and not cfg.socket:
        raise ValueError(f".socket is required by strategy {cfg.strategy}")
    if cfg.strategy == "http" and not cfg.url:
        raise ValueError(".url is required by strategy http")
    return cfg


def _url_paths(value: Any) -> tuple[str, ...]:
    paths = _str_list(value)
    for p in paths:
        if not p.startswith("/") or any(c.isspace() for c in p):
            raise ValueError(f"paths must start with / and contain no spaces: {p!r}")
    return paths


def _public_dir(value: Any) -> str:
    try:
        return check_relative_path(_str(value), "public_dir")
    except ConfigError as exc:
        raise ValueError(exc.message) from None


def _hooks(value: Any) -> Mapping[str, tuple[HookCommand, ...]]:
    """`hooks: {after_shared: ["cmd", {run: "cmd", once: true}]}`, points checked."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a map of hook points to lists of commands, not {_type_name(value)}")  # noqa: E501
    out: dict[str, tuple[HookCommand, ...]] = {}
    for point, cmds in value.items():
        if point not in POINTS:
            raise ValueError(f"has an {unknown_point(point)}")
        if isinstance(cmds, str | dict):
            cmds = [cmds]
        if not isinstance(cmds, list):
            raise ValueError(f".{point} must be a list of commands, not {_type_name(cmds)}")
        parsed = []
        for cmd in cmds:
            if isinstance(cmd, dict):
                unknown = set(cmd) - {"run", "once"}
                if unknown or not isinstance(cmd.get("run"), str):
                    raise ValueError(f".{point}: a command map needs 'run' (a string) and may have 'once'")  # noqa: E501
                once = cmd.get("once", False)
                if not isinstance(once, bool):
                    raise ValueError(f".{point}: once must be true or false")
                cmd, flag = cmd["run"], once
            elif isinstance(cmd, str):
                flag = False
            else:
                raise ValueError(f".{point}: each command must be a string, not {_type_name(cmd)}")
            if not cmd.strip() or "\0" in cmd:
                raise ValueError(f".{point}: empty command")
            if point == FAILURE and flag:
                raise ValueError(f".{point}: once is not supported here")
            parsed.append(HookCommand(cmd, once=flag))
        out[point] = tuple(parsed)
    return out


def _recipes(value: Any) -> tuple[str, ...]:
    names = _str_list(value)
    for n in names:
        if n not in RECIPES:
            raise ValueError(f"has an unknown recipe {n!r} (valid: {', '.join(RECIPES)})")
    return names


def _urls(value: Any) -> tuple[str, ...]:
    urls = (value,) if isinstance(value, str) else _str_list(value)
    for u in urls:
        if not u.startswith(("http://", "https://")):
            # Never echo the value: a webhook URL is a secret.
            raise ValueError("must be http:// or https:// URLs")
    return tuple(urls)


@dataclass(frozen=True)
class Key:
    check: Callable[[Any], Any]
    default: Any
    help: str


# The contract: every key an inventory may set, at `config:` or per host.
KEYS: dict[str, Key] = {
    "application": Key(_str, "", "name of the application, for messages"),
    "deploy_path": Key(_deploy_path, None, "absolute directory on the host (required)"),
    "source": Key(_str, ".", "local directory uploaded as each release"),
    "exclude": Key(_str_list, (".git",), "rsync patterns left out of the upload"),
    "upload_hardlinks": Key(_bool, False, "hardlink unchanged files from the live release"),
    "sync_release": Key(_bool, True, "flush the release to disk before it can go live"),
    "keep_releases": Key(_int(1, 1000), 5, "complete releases kept by cleanup"),
    "shared_dirs": Key(_rel_paths, (), "directories linked from shared/ into each release"),
    "shared_files": Key(_rel_paths, (), "files linked from shared/ into each release"),
    "secret_files": Key(_rel_paths, (".env",),
                        "shared files created 0600 when first copied from a release"),
    "umask": Key(_umask, "022", "umask of every command atomicdeploy runs on the host"),
    "writable_dirs": Key(_rel_paths, (), "directories made writable for the web server"),
    "writable_mode": Key(_choice(*WRITABLE_MODES), "chmod", "chmod, acl, chown or skip"),
    "writable_chmod_mode": Key(_str, "ug+rwX", "mode given to chmod in chmod mode"),
    "writable_recursive": Key(_bool, True, "apply the writable mode recursively"),
    "http_user": Key(_user, "", "web server user, for acl and chown modes"),
    "writable_use_sudo": Key(_bool, False, "run chown through `sudo -n` (never a prompt)"),
    "parallel": Key(_int(1, 1000), 10, "hosts worked on at the same time"),
    "hostname": Key(_address, None, "address or ssh_config alias (default: the host's name)"),
    "port": Key(_int(1, 65535), None, "SSH port (default: from ssh_config, else 22)"),
    "remote_user": Key(_user, None, "SSH user (default: from ssh_config, else you)"),
    "identity_file": Key(_str, None, "SSH private key"),
    "ssh_config": Key(_str, None, "OpenSSH config file to read instead of ~/.ssh/config"),
    "known_hosts": Key(
        _str, "~/.ssh/known_hosts", "host keys: new ones are recorded, changed ones refused"
    ),
    "connect_timeout": Key(_int(1, 3600), 10, "seconds to wait for SSH to connect"),
    "command_timeout": Key(_int(1, 86400), 900,
                           "seconds a remote command (or a stalled upload) may take"),
    "forward_agent": Key(_bool, False, "forward your SSH agent to the host"),
    "labels": Key(_str_map, {}, "labels; labels.stage makes the stage task"),
    "nginx": Key(_sub(NginxConfig, {
        "root_file": _str, "public_dir": _public_dir, "template": _nginx_template, "test": _str,
        "reload": _str, "pid_file": _str, "reload_timeout": _int(1, 3600),
    }), None, "point nginx at each release through a generated include"),
    "opcache": Key(_opcache, OpcacheConfig(), "how to clear php-fpm's opcache after go-live"),
    "warmup": Key(_url_paths, (), "paths requested through php-fpm on the new release first"),
    "warmup_script": Key(_str, "index.php", "front controller used for warm-up paths"),
    "healthcheck": Key(_sub(HealthCheck, {
        "url": _http_url, "status": _int(100, 599), "contains": _str, "timeout": _int(1, 600),
    }), None, "checked on each host after go-live; a failure rolls the stage back"),
    "hooks": Key(_hooks, {}, "shell commands run in the release at hook points"),
    "recipes": Key(_recipes, (), "framework recipes to run: composer, laravel, symfony"),
    "composer": Key(_str, "composer", "composer command on the host, for the composer recipe"),
    "composer_options": Key(_str, COMPOSER_OPTIONS, "arguments of the composer recipe"),
    "webhook": Key(_urls, (), "Slack-compatible webhook URL(s): start, success, failure of a run"),
    "secrets": Key(_str_map, {}, "values masked in every log line; hooks read cfg.host.secrets"),
}


@dataclass(frozen=True)
class HostConfig:
    """Everything atomicdeploy knows about one host, validated. Frozen: passed, never changed."""

    name: str
    deploy_path: str
    hostname: str
    application: str = ""
    source: str = "."
    exclude: tuple[str, ...] = (".git",)
    upload_hardlinks: bool = False
    sync_release: bool = True
    keep_releases: int = 5
    shared_dirs: tuple[str, ...] = ()
    shared_files: tuple[str, ...] = ()
    secret_files: tuple[str, ...] = (".env",)
    umask: str = "022"
    writable_dirs: tuple[str, ...] = ()
    writable_mode: str = "chmod"
    writable_chmod_mode: str = "ug+rwX"
    writable_recursive: bool = True
    http_user: str = ""
    writable_use_sudo: bool = False
    parallel: int = 10
    port: int | None = None
    remote_user: str | None = None
    identity_file: str | None = None
    ssh_config: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: int = 10
    command_timeout: int = 900
    forward_agent: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    nginx: NginxConfig | None = None
    opcache: OpcacheConfig = OpcacheConfig()
    warmup: tuple[str, ...] = ()
    warmup_script: str = "index.php"
    healthcheck: HealthCheck | None = None
    hooks: Mapping[str, tuple[HookCommand, ...]] = field(default_factory=dict)
    recipes: tuple[str, ...] = ()
    composer: str = "composer"
    composer_options: str = COMPOSER_OPTIONS
    webhook: tuple[str, ...] = field(default=(), repr=False)  # secrets: kept out of reprs
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def stage(self) -> str | None:
        return self.labels.get("stage")


assert {f.name for f in fields(HostConfig)} - {"name"} == set(KEYS), "KEYS and HostConfig differ"


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


# --- loading ----------------------------------------------------------------------------------


class _DuplicateKey(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, mark: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", mark)
        self.key = key


class _StrictLoader(yaml.SafeLoader):
    """Safe loading, and a duplicate key is an error (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            ) from None
        if duplicate:
            raise _DuplicateKey(key, key_node.start_mark)
        seen[key] = True
    return loader.construct_mapping_plain(node, deep=deep)


_StrictLoader.construct_mapping_plain = yaml.SafeLoader.construct_mapping  # type: ignore[attr-defined]
_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping  # type: ignore[arg-type]
)


def load(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate an inventory file; every problem is one ConfigError line."""
    path = Path(path)
    label = path.name
    try:
        if path.stat().st_size > MAX_INVENTORY_BYTES:
            raise ConfigError(f"{label}: larger than {MAX_INVENTORY_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: inventory file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read inventory: {exc}") from None
    return parse(text, path)


def parse(text: str, path: Path = Path("inventory.yml")) -> Inventory:
    label = path.name
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python tags
    except _DuplicateKey as exc:
        line = exc.problem_mark.line
        where = _section_at(text, line)
        raise ConfigError(f"{label}: {where}duplicate key {exc.key!r} at line {line + 1}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{label}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{label}: invalid YAML: nested too deeply") from None
    except Exception as exc:  # PyYAML's constructors: impossible dates, bad !!int, ...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(f"{label}: invalid YAML: a value cannot be read ({reason})") from None
    if data is None:
        raise ConfigError(f"{label}: the file is empty: it needs a 'hosts:' map")
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: the top level must be a map with 'config:' and 'hosts:'")
    for key in data:
        if key not in ("config", "hosts"):
            raise ConfigError(f"{label}: unknown top-level key {key!r} (valid: config, hosts)")
    defaults = data.get("config")
    defaults = {} if defaults is None else defaults  # `config:` left empty
    if not isinstance(defaults, dict):
        raise ConfigError(f"{label}: config: must be a map, not {_type_name(defaults)}")
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise ConfigError(f"{label}: 'hosts:' must be a map with at least one host")
    _check_keys(label, "config", defaults)
    configs = []
    for name, overrides in hosts.items():
        if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
            raise ConfigError(f"{label}: host {name!r}: a host name must be letters, digits, '.', '_' or '-'")  # noqa: E501
        overrides = overrides if overrides is not None else {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{label}: host {name}: must be a map, not {_type_name(overrides)}")
        _check_keys(label, f"host {name}", overrides)
        configs.append(_host_config(label, name, {**defaults, **overrides}))
    for host in configs:
        if "stage" in host.labels and not host.labels["stage"].strip():
            raise ConfigError(f"{label}: host {host.name}: labels.stage is empty")
    return Inventory(path=path, hosts=tuple(configs))


def _section_at(text: str, line: int) -> str:
    """`host web1: ` or `config: ` for the map holding `line` (0-based), for error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return ""
    if not isinstance(root, yaml.MappingNode):
        return ""
    for key, value in root.value:
        inside = value.start_mark.line <= line <= value.end_mark.line
        if key.value == "config" and inside:
            return "config: "
        if key.value == "hosts" and isinstance(value, yaml.MappingNode):
            for host, body in value.value:
                if isinstance(body, yaml.MappingNode) and (
                    body.start_mark.line <= line <= body.end_mark.line
                ):
                    return f"host {host.value}: "
    return ""


def _check_keys(label: str, where: str, values: dict) -> None:
    for key in values:
        if key not in KEYS:
            raise ConfigError(f"{label}: {where}: unknown key {key!r}{did_you_mean(key, KEYS)}")


def _host_config(label: str, name: str, raw: dict[str, Any]) -> HostConfig:
    where = f"{label}: host {name}"
    resolved = _resolve_refs(where, name, raw)
    values: dict[str, Any] = {}
    for key, spec in KEYS.items():
        if key not in resolved or resolved[key] is None:
            values[key] = spec.default
            continue
        try:
            values[key] = spec.check(resolved[key])
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} {exc}") from None
    if values["deploy_path"] is None:
        raise ConfigError(f"{where}: deploy_path is missing (set it under config: or the host)")
    needs_user = values["writable_mode"] in ("acl", "chown") and values["writable_dirs"]
    if needs_user and not values["http_user"]:
        raise ConfigError(f"{where}: http_user is required with writable_mode {values['writable_mode']}")  # noqa: E501
    for item in values["shared_dirs"] + values["shared_files"]:
        others = [o for o in values["shared_dirs"] if o != item and item.startswith(o + "/")]
        if others:
            raise ConfigError(f"{where}: shared path {item!r} is inside shared dir {others[0]!r}")
    values["hostname"] = values["hostname"] or name
    nginx = values["nginx"]
    if nginx is not None and not nginx.root_file:
        root_file = posixpath.join(values["deploy_path"], "root_dir.nginx.conf")
        values["nginx"] = replace(nginx, root_file=root_file)
    if values["warmup"] and not values["opcache"].socket:
        raise ConfigError(f"{where}: warmup needs opcache.socket (php-fpm's socket)")
    for key in ("identity_file", "ssh_config", "known_hosts"):
        if values[key]:
            values[key] = os.path.expanduser(values[key])
    return HostConfig(name=name, **values)


# Values that are shell text: there a `{{key}}` stands for one word and is pasted
# shell-quoted, so `application: "shop; touch x"` is data in `echo {{application}}`.
# (A plain value such as /srv/shop or web1 is pasted as it is.)
_SHELL_TEXT = {("nginx", "test"), ("nginx", "reload"), ("opcache", "reload"),
               ("opcache", "cachetool"), ("composer",), ("composer_options",)}  # fmt: skip


def _is_shell_text(keys: tuple[str, ...]) -> bool:
    """Whether the value at `keys` (map keys, `*` for list items) is shell text: hook
    commands (not their `once`/`roles`) and the command settings in _SHELL_TEXT."""
    if keys[0] == "hooks":
        return keys[-1] not in ("once", "roles")
    return keys in _SHELL_TEXT


MAX_EXPANDED_NODES = 100_000  # values after YAML aliases are expanded, per host
MAX_VALUE_CHARS = 100_000  # one string after `{{key}}` expansion


def _resolve_refs(where: str, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Expand `{{key}}` in string values (also inside lists and maps) from other keys;
    shell-quoted where the value is shell text (see _is_shell_text).

    YAML aliases share one object: a recursive alias (`&x [*x]`) is refused, and an
    alias bomb or a `{{key}}` bomb stops at a size limit instead of filling memory.
    """
    scope = {"alias": name, **raw}
    nodes = [0]
    if scope.get("hostname") is None:
        scope["hostname"] = name
    cache: dict[str, str] = {}

    def scalar(key: str, chain: tuple[str, ...]) -> str:
        if key in chain:
            raise ConfigError(f"{where}: {{{{{key}}}}} refers to itself ({' -> '.join((*chain, key))})")  # noqa: E501
        if key not in cache:
            if key not in scope or scope[key] is None:
                raise ConfigError(f"{where}: {{{{{key}}}}} refers to a key that is not set")
            value = scope[key]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ConfigError(f"{where}: {{{{{key}}}}} must refer to a string or number")
            cache[key] = expand(str(value), (*chain, key))
        return cache[key]

    def expand(value: Any, chain: tuple[str, ...], path: tuple[int, ...] = (),
               keys: tuple[str, ...] = ()) -> Any:  # fmt: skip
        nodes[0] += 1
        if nodes[0] > MAX_EXPANDED_NODES:
            raise ConfigError(f"{where}: more than {MAX_EXPANDED_NODES} values once YAML"
                              " aliases are expanded")  # fmt: skip
        if isinstance(value, str):
            paste = shlex.quote if keys and _is_shell_text(keys) else str
            out = _REF.sub(lambda m: paste(scalar(m.group(1), chain)), value)
            if "{{" in value and len(out) > MAX_VALUE_CHARS:
                raise ConfigError(f"{where}: a value is longer than {MAX_VALUE_CHARS}"
                                  " characters once {{key}} references are expanded")  # fmt: skip
            return out
        if isinstance(value, list | dict):
            if id(value) in path:
                raise ConfigError(f"{where}: {chain[0]}: a YAML alias refers to itself")
            inner = (*path, id(value))
            if isinstance(value, list):
                return [expand(v, chain, inner, (*keys, "*")) for v in value]
            return {k: expand(v, chain, inner, (*keys, str(k))) for k, v in value.items()}
        return value

    return {key: expand(value, (key,), (), (key,)) for key, value in raw.items()}
