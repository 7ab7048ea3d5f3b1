"""Value checkers: each returns the clean value or raises ValueError(reason).

Pure. The reason is a phrase that follows the key's name in the one-line error
("host web1: keep_releases must be between 1 and 1000, not 0").
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..hooks import FAILURE, POINTS, HookCommand, unknown_point
from ..layout import check_relative_path
from ..recipes import RECIPES
from ..secrets import redact_url_passwords
from ..shell import nginx_set_only

WRITABLE_MODES = ("chmod", "acl", "chown", "chgrp", "sticky", "skip")


_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


# DNS names, IPv4 and IPv6 addresses (with a %zone), ssh_config aliases. Not spaces or
# newlines, nor ',' '*' '?' '!' '[' ']': in a known_hosts line those would name other
# hosts (a pattern, a list) for the key recorded on first use.
# (A user goes in remote_user, not in front of the name.)
_ADDRESS = re.compile(r"^(?=.*[A-Za-z0-9])[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*$")


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


def _keep(value: Any) -> int:
    """Releases cleanup keeps: 1 to 1000, or -1 to keep them all (as in Deployer)."""
    if value == -1 and not isinstance(value, bool):
        return -1
    return _int(1, 1000)(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_type_name(value)}")
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, not {_type_name(value)}")
    return tuple(value)


_ROLE = re.compile(r"^[A-Za-z0-9_-]+$")


def _roles(value: Any) -> tuple[str, ...]:
    """Role names a host has (`roles: [web, worker]`), for selection and per-role hooks."""
    names = _str_list(value)
    for n in names:
        if not _ROLE.fullmatch(n):
            raise ValueError(f"has {n!r}: a role name is letters, digits, '-' or '_'")
    return tuple(dict.fromkeys(names))


def _repository(value: Any) -> str:
    value = _str(value)
    if value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value):
        shown = redact_url_passwords(value)[:60]
        raise ValueError(f"{shown!r} must not start with '-' or hold spaces")
    return value


def _commands(value: Any) -> tuple[str, ...]:
    """Shell commands (`build:`): a string or a list of them, none empty."""
    commands = (value,) if isinstance(value, str) else _str_list(value)
    if any(not c.strip() or "\0" in c for c in commands):
        raise ValueError("has an empty command")
    return tuple(commands)


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
        raise ValueError(
            f"{value!r} is not a host name, IP address or ssh_config alias"
            " (letters, digits, '.', '-', '_', ':', '%')"
        )
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
        raise ValueError(
            f"may only use {{public_path}}, {{release_path}} and {{release}}"
            f" (and {{{{ }}}} for a literal brace): {exc}"
        ) from None
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
    """An absolute path, or `~/path` (the SSH user's home, found on the host when a run
    starts: see homes.py)."""
    value = _str(value)
    if value.startswith("~/") and value.strip("/") != "~":
        rest = _deploy_path(value[1:])
        return "~" + rest
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path or ~/path, not {value!r}")
    if "\0" in value or "\n" in value:
        raise ValueError("must not contain NUL or newline characters")
    norm = posixpath.normpath(value)
    if norm == "/" or norm == "//":
        raise ValueError("must not be / itself")
    if ".." in value.split("/"):
        raise ValueError(f"must not contain '..': {value!r}")
    return norm


def _type_name(value: Any) -> str:
    names = {
        dict: "a map",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "empty",
    }
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
    # Default: `fcgi` when a socket is set, else `none` (docs/nginx-php-fpm.md: measured, and why).
    strategy: str = "none"
    socket: str = ""  # php-fpm's socket path or host:port
    cachetool: str = "cachetool"  # binary (or `php /path/cachetool.phar`)
    url: str = ""  # http strategy
    reload: str = "sudo -n systemctl reload php8.2-fpm"  # fpm-reload strategy
    # fcgi: reset only above this percent of opcache memory or script slots in use (0: always)
    reset_above: int = 75


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
            missing = [
                f.name
                for f in fields(kind)
                if f.name not in out and f.default is MISSING and f.default_factory is MISSING
            ]
            raise ValueError(f"needs {', '.join(missing)}") from None

    return check


def _opcache(value: Any) -> OpcacheConfig:
    cfg = _sub(
        OpcacheConfig,
        {
            "strategy": _choice(*OPCACHE_STRATEGIES),
            "socket": _str,
            "cachetool": _str,
            "url": _http_url,
            "reload": _str,
            "reset_above": _int(0, 99),
        },
    )(value)
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
    """A directory of the release, or "" for the release itself (`.` or `""`)."""
    if _str(value).strip() in ("", ".", "./"):
        return ""
    try:
        return check_relative_path(_str(value), "public_dir")
    except ConfigError as exc:
        raise ValueError(exc.message) from None


def _hooks(value: Any) -> Mapping[str, tuple[HookCommand, ...]]:
    """`hooks: {after_shared: ["cmd", {run: "cmd", once: true}]}`, points checked."""
    if not isinstance(value, dict):
        raise ValueError(
            f"must be a map of hook points to lists of commands, not {_type_name(value)}"
        )
    out: dict[str, tuple[HookCommand, ...]] = {}
    for point, cmds in value.items():
        if point not in POINTS:
            raise ValueError(f"has an {unknown_point(point)}")
        if isinstance(cmds, str | dict):
            cmds = [cmds]
        if not isinstance(cmds, list):
            raise ValueError(f".{point} must be a list of commands, not {_type_name(cmds)}")
        out[point] = tuple(_hook_command(point, cmd) for cmd in cmds)
    return out


def _hook_command(point: str, cmd: Any) -> HookCommand:
    """One entry of a hook point: a string, or `{run: ..., once: ...}`."""
    flag, roles = False, ()
    if isinstance(cmd, dict):
        unknown = set(cmd) - {"run", "once", "roles"}
        if unknown or not isinstance(cmd.get("run"), str):
            raise ValueError(
                f".{point}: a command map needs 'run' (a string) and may have 'once' and 'roles'"
            )
        flag = cmd.get("once", False)
        if not isinstance(flag, bool):
            raise ValueError(f".{point}: once must be true or false")
        try:
            roles = _roles(cmd.get("roles") or [])
        except ValueError as exc:
            raise ValueError(f".{point}: roles {exc}") from None
        cmd = cmd["run"]
    elif not isinstance(cmd, str):
        raise ValueError(f".{point}: each command must be a string, not {_type_name(cmd)}")
    if not cmd.strip() or "\0" in cmd:
        raise ValueError(f".{point}: empty command")
    if point == FAILURE and flag:
        raise ValueError(f".{point}: once is not supported here")
    return HookCommand(cmd, once=flag, roles=roles)


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


_nginx = _sub(
    NginxConfig,
    {
        "root_file": _str,
        "public_dir": _public_dir,
        "template": _nginx_template,
        "test": _str,
        "reload": _str,
        "pid_file": _str,
        "reload_timeout": _int(1, 3600),
    },
)
_healthcheck = _sub(
    HealthCheck,
    {
        "url": _http_url,
        "status": _int(100, 599),
        "contains": _str,
        "timeout": _int(1, 600),
    },
)
