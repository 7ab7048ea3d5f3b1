"""Read `inventory.yml` strictly (duplicate keys, size, YAML errors) into an Inventory.

Every mistake is one ConfigError line naming the file, the host and the key.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, did_you_mean
from ..recipes import with_defaults
from .checks import OpcacheConfig, _type_name
from .hints import MEANT, TOP_LEVEL_HINTS
from .refs import _resolve_refs
from .schema import KEYS, HostConfig, Inventory

MAX_INVENTORY_BYTES = 1_000_000


# Steps a host can turn off that `config:` turns on for the stage (`nginx: false` on a
# queue worker with no web server): the value that means "not on this host".
STEPS_OFF: dict[str, Any] = {
    "nginx": None,
    "opcache": OpcacheConfig(strategy="none"),
    "warmup": (),
    "healthcheck": None,
}
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
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
    """Every problem in the file at once, one line each (a ConfigError holding them all):
    one run shows what to fix, instead of one mistake per run."""
    label = path.name
    errors: list[str] = []
    defaults, hosts = _top_level(_read_yaml(text, label), label, errors)
    errors += _unknown_keys(label, "config", defaults)
    configs = []
    for name, overrides in hosts.items():
        try:
            configs.append(_host(label, name, overrides, defaults, errors))
        except ConfigError as exc:
            errors.append(exc.message)
    if errors:
        raise ConfigError(_listed(label, list(dict.fromkeys(errors))))
    return Inventory(path=path, hosts=tuple(configs))


MAX_ERRORS = 30  # lines; a generated file gone wrong must not print ten thousand


def _listed(label: str, errors: list[str]) -> str:
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS
        errors = [*errors[:MAX_ERRORS], f"{label}: ... and {more} more problem(s)"]
    return "\n".join(errors)


def _host(
    label: str, name: Any, overrides: Any, defaults: dict[str, Any], errors: list[str]
) -> HostConfig:
    if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
        raise ConfigError(
            f"{label}: host {name!r}: a host name must be letters, digits, '.', '_' or '-'"
        )
    overrides = overrides if overrides is not None else {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{label}: host {name}: must be a map, not {_type_name(overrides)}")
    unknown = _unknown_keys(label, f"host {name}", overrides)
    if unknown:
        errors += unknown
        overrides = {k: v for k, v in overrides.items() if k in KEYS}
    config = {k: v for k, v in defaults.items() if k in KEYS}
    host = _host_config(label, name, with_defaults({**config, **overrides}), set(overrides), errors)
    if "stage" in host.labels and not host.labels["stage"].strip():
        raise ConfigError(f"{label}: host {host.name}: labels.stage is empty")
    return host


def _read_yaml(text: str, label: str) -> Any:
    """The YAML document, or one ConfigError line saying where and why it cannot be read."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python tags
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


def _top_level(data: Any, label: str, errors: list[str]) -> tuple[dict[str, Any], dict[Any, Any]]:
    """(`config:` defaults, `hosts:`), checked for shape; unknown top-level keys join
    `errors` (Deployer's deploy.yaml has `import:`, `tasks:`, `after:`...)."""
    if data is None:
        raise ConfigError(f"{label}: the file is empty: it needs a 'hosts:' map")
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: the top level must be a map with 'config:' and 'hosts:'")
    for key in data:
        if key not in ("config", "hosts"):
            hint = TOP_LEVEL_HINTS.get(key, "")
            errors.append(f"{label}: unknown top-level key {key!r} (valid: config, hosts){hint}")
    defaults = data.get("config")
    defaults = {} if defaults is None else defaults  # `config:` left empty
    if not isinstance(defaults, dict):
        raise ConfigError(f"{label}: config: must be a map, not {_type_name(defaults)}")
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        errors.append(f"{label}: 'hosts:' must be a map with at least one host")
        raise ConfigError(_listed(label, errors))
    return defaults, hosts


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


def _where_written(message: str, label: str, name: str, own: set[str]) -> str:
    """A problem in a value the host took from `config:` is reported once, under config:."""
    prefix = f"{label}: host {name}: "
    if not message.startswith(prefix):
        return message
    rest = message[len(prefix) :]
    key = re.split(r"[ .:]", rest, maxsplit=1)[0]
    return f"{label}: config: {rest}" if key in KEYS and key not in own else message


def _unknown_keys(label: str, where: str, values: dict) -> list[str]:
    return [
        f"{label}: {where}: unknown key {key!r}{_hint(key)}" for key in values if key not in KEYS
    ]


def _hint(key: Any) -> str:
    """What a Deployer or Capistrano user meant by a key we do not have: its meaning first,
    then the closest spelling."""
    if isinstance(key, str) and key in MEANT:
        return MEANT[key]
    return did_you_mean(key, KEYS)


def _host_config(
    label: str,
    name: str,
    raw: dict[str, Any],
    own: set[str] | None = None,
    errors: list[str] | None = None,
) -> HostConfig:
    """One host's config from its keys and `config:`'s. A bad value is reported where it
    was written: under the host if the host set it (`own`), else once under `config:`."""
    where = f"{label}: host {name}"
    try:
        resolved = _resolve_refs(where, name, raw)
    except ConfigError as exc:
        if own is None:
            raise
        raise ConfigError(_where_written(exc.message, label, name, own)) from None
    values, bad = _checked(resolved, where, label, own)
    if bad and errors is not None:
        errors += bad[1:]
    if bad:
        raise ConfigError(bad[0])
    _check_together(where, values)
    return HostConfig(name=name, **_completed(values, name))


def _checked(
    resolved: dict[str, Any], where: str, label: str, own: set[str] | None
) -> tuple[dict[str, Any], list[str]]:
    """Every key's value, checked (or its default); and a line for each bad one."""
    values: dict[str, Any] = {}
    bad: list[str] = []
    for key, spec in KEYS.items():
        if key not in resolved or resolved[key] is None:
            values[spec.field] = spec.default
        elif resolved[key] is False and key in STEPS_OFF:
            values[spec.field] = STEPS_OFF[key]
        else:
            try:
                values[spec.field] = spec.check(resolved[key])
            except ValueError as exc:
                written = where if own is None or key in own else f"{label}: config"
                bad.append(f"{written}: {key} {exc}")
    return values, bad


def _completed(values: dict[str, Any], name: str) -> dict[str, Any]:
    """The values that follow from others: hostname, the nginx include's path, `~` paths."""
    values["hostname"] = values["hostname"] or name
    nginx = values["nginx"]
    if nginx is not None and not nginx.root_file:
        root_file = posixpath.join(values["deploy_path"], "root_dir.nginx.conf")
        values["nginx"] = replace(nginx, root_file=root_file)
    for key in ("identity_file", "ssh_config", "known_hosts"):
        if values[key]:
            values[key] = os.path.expanduser(values[key])
    return values


def _check_together(where: str, values: dict[str, Any]) -> None:
    """The checks that need several keys at once."""
    if values["deploy_path"] is None:
        raise ConfigError(f"{where}: deploy_path is missing (set it under config: or the host)")
    mode = values["writable_mode"] if values["writable_dirs"] else "skip"
    if mode in ("acl", "chown") and not values["http_user"]:
        raise ConfigError(f"{where}: http_user is required with writable_mode {mode}")
    if mode in ("chgrp", "sticky") and not values["http_group"]:
        raise ConfigError(f"{where}: http_group is required with writable_mode {mode}")
    for item in values["shared_dirs"] + values["shared_files"]:
        others = [o for o in values["shared_dirs"] if o != item and item.startswith(o + "/")]
        if others:
            raise ConfigError(f"{where}: shared path {item!r} is inside shared dir {others[0]!r}")
    if values["warmup"] and not values["opcache"].socket:
        raise ConfigError(f"{where}: warmup needs opcache.socket (php-fpm's socket)")
