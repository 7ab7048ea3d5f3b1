"""`atomicdeploy from-deployer deploy.yaml`: a Deployer 7 (or 6) YAML recipe as an inventory.

Prints the inventory on stdout and, on stderr, one line for each part that could not be
carried over and why (a task with a PHP body, a contrib recipe, a setting with no
equivalent). Exit 0 when the printed inventory loads; otherwise the loader's lines follow.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from invoke import Exit, task

from .errors import EXIT_USAGE, ConfigError
from .inventory import KEYS
from .inventory.loader import parse

RECIPES = {
    "recipe/laravel.php": "laravel",
    "recipe/symfony.php": "symfony",
    "recipe/composer.php": "composer",
    "recipe/common.php": None,  # what every deploy here does anyway
}
# Deployer's steps, and the hook point of ours that runs at the same moment.
STEPS = {
    "deploy:release": "release",
    "deploy:update_code": "upload",
    "deploy:shared": "shared",
    "deploy:writable": "writable",
    "deploy:vendors": "vendors",
    "deploy:symlink": "switch",
    "deploy:publish": "switch",
    "deploy:cleanup": "cleanup",
}
# What the laravel recipe here already runs: converting these again would run them twice.
LARAVEL_DOES = {
    "storage:link",
    "config:cache",
    "route:cache",
    "view:cache",
    "event:cache",
    "migrate",
    "queue:restart",
}
RENAMED = {"user": "remote_user", "host": "hostname", "config_file": "ssh_config"}
DROPPED = {  # settings whose work is done differently here: nothing to carry over
    "update_code_strategy",
    "git_tty",
    "ssh_multiplexing",
    "allow_anonymous_stats",
    "default_timeout",
}


class Conversion:
    """The inventory being written, and what could not be carried over."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.hosts: dict[str, dict[str, Any]] = {}
        self.left: list[str] = []
        self.tasks: dict[str, Any] = {}

    def leave(self, what: str, why: str) -> None:
        self.left.append(f"{what}: {why}")


def convert(text: str) -> Conversion:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError("deploy.yaml: the top level must be a map")
    out = Conversion()
    out.tasks = data.get("tasks") or {}
    _imports(data.get("import"), out)
    out.config.update(_settings(data.get("config") or {}, "config", out))
    for name, host in (data.get("hosts") or {}).items():
        out.hosts[str(name)] = _host(str(name), host or {}, out)
    for when in ("before", "after"):
        for step, names in (data.get(when) or {}).items():
            _hook(when, str(step), names, out)
    for key in data:
        if key not in ("import", "config", "hosts", "tasks", "before", "after"):
            out.leave(key, "no equivalent here; left out")
    return out


def _imports(value: Any, out: Conversion) -> None:
    items = [value] if isinstance(value, str) else list(value or [])
    for item in items:
        if item in RECIPES:
            if RECIPES[item]:
                out.config.setdefault("recipes", []).append(RECIPES[item])
        else:
            out.leave(f"import {item}", "no recipe of that name here (composer, laravel, symfony)")


def _settings(values: dict[str, Any], where: str, out: Conversion) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in values.items():
        name = RENAMED.get(key, key)
        if key in DROPPED:
            out.leave(f"{where}.{key}", "not needed: the release is exported and uploaded here")
        elif name == "keep_releases" or name in KEYS:
            kept[name] = value
        else:
            out.leave(f"{where}.{key}", "no setting of that name here; left out")
    return kept


def _host(name: str, host: dict[str, Any], out: Conversion) -> dict[str, Any]:
    host = dict(host)
    stage = host.pop("stage", None)  # Deployer 6
    kept = _settings(host, f"hosts.{name}", out)
    if stage and "labels" not in kept:
        kept["labels"] = {"stage": str(stage)}
    if "labels" not in kept or "stage" not in kept["labels"]:
        kept.setdefault("labels", {})["stage"] = name
        out.leave(f"hosts.{name}", f"no stage label: put in stage {name!r}")
    return kept


def _hook(when: str, step: str, names: Any, out: Conversion) -> None:
    point = "on_failure" if step == "deploy:failed" else None
    if point is None and step in STEPS:
        point = f"{when}_{STEPS[step]}"
    if point is None:
        out.leave(f"{when} {step}", "no step of that name here; its hook is left out")
        return
    for task_name in [names] if isinstance(names, str) else list(names or []):
        commands = _commands(str(task_name), out)
        if commands:
            out.config.setdefault("hooks", {}).setdefault(point, []).extend(commands)


def _commands(name: str, out: Conversion) -> list[str]:
    """A task's shell commands: a YAML task's `run:` lines, or an artisan task."""
    if name == "deploy:unlock":
        return []  # a failed deploy here releases its lock itself
    if name.startswith("artisan:"):
        command = name[len("artisan:") :]
        if command in LARAVEL_DOES and "laravel" in out.config.get("recipes", []):
            out.leave(f"task {name}", "the laravel recipe runs it already")
            return []
        return [f"{{{{bin/php}}}} artisan {command} --no-interaction"]
    body = out.tasks.get(name)
    if body is None:
        out.leave(f"task {name}", "defined in PHP or a recipe we do not have; left out")
        return []
    steps = body if isinstance(body, list) else [body]
    runs = [s["run"] for s in steps if isinstance(s, dict) and isinstance(s.get("run"), str)]
    if len(runs) != len(steps):
        out.leave(f"task {name}", "only its `run:` steps were carried over")
    return runs


def render(out: Conversion) -> str:
    return yaml.safe_dump({"config": out.config, "hosts": out.hosts}, sort_keys=False)


@task(
    name="from-deployer",
    positional=["path"],
    help={"path": "Deployer's deploy.yaml (or .yml) to convert"},
)
def from_deployer(c, path):
    """Print an inventory.yml made from a Deployer deploy.yaml; what could not be carried
    over is listed on stderr."""
    try:
        out = convert(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ConfigError) as exc:
        raise Exit(f"from-deployer: {path}: {exc}", code=EXIT_USAGE) from None
    text = render(out)
    print(text, end="")
    for line in out.left:
        print(f"not carried over: {line}", file=sys.stderr)
    try:
        parse(text)
    except ConfigError as exc:
        raise Exit(f"the inventory does not load yet:\n{exc}", code=1) from None
