"""Tasks beside the deploy: `ssh` and `run` reach into the live release (Deployer's
`dep ssh` and `dep run`) through the same connection settings as a deploy; `config` prints
what a stage's hosts will be deployed with (Deployer's `dep config`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml
from invoke import Exit, task

from . import pipeline
from .errors import EXIT_USAGE, AtomicDeployError, FleetError
from .inventory import KEYS, HostConfig
from .report import Reporter
from .secrets import redact_url_passwords
from .taskbase import HOSTS_HELP, ROLES_HELP, chosen_hosts, guarded, selection


@task(
    help={
        "host": "host to log in to (default: the first host of the stage, or of the roles given)",
        "roles": ROLES_HELP,
        "stage": "stage, instead of `fab STAGE ssh`",
        "inventory": "inventory file",
    }
)
def ssh(c, host=None, roles=None, stage=None, inventory=None):
    """Open an interactive login shell in the live release of one host."""
    inv, stage = selection(c, stage, inventory)
    if host and "," in host:
        raise Exit("--host takes one host name (use `run --hosts` for several)", code=EXIT_USAGE)
    target = chosen_hosts(inv, stage, host, roles)[0]

    def body(reporter: Reporter) -> int:
        return pipeline.login(target, c.config)

    status = guarded(body, (target,))
    if status:
        raise Exit(code=status)


@task(
    name="run",
    help={
        "cmd": "shell command to run in the live release (`current`) of each host",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
        "stage": "stage, instead of `fab STAGE run`",
        "inventory": "inventory file",
    },
)
def run_command(c, cmd=None, hosts=None, roles=None, stage=None, inventory=None):
    """Run a command in the live release of every selected host at once; a summary of each
    host's exit status; exit 1 if any failed."""
    if not cmd or not cmd.strip():
        raise Exit('run needs --cmd "COMMAND"', code=EXIT_USAGE)
    inv, stage = selection(c, stage, inventory)
    chosen = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        statuses, failures = pipeline.run_command(
            chosen, reporter, cmd, stage=stage, fabric_config=c.config
        )
        rows = [(h.name, str(statuses[h.name]) if h.name in statuses else "-") for h in chosen]
        reporter.table(("host", "exit status"), rows, indent="")
        for name, status in statuses.items():
            if status:
                failures[name] = AtomicDeployError(f"exit {status}", host=name, step="run")
        if failures:
            raise FleetError(
                f"run failed on {len(failures)}/{len(chosen)} host(s): {', '.join(failures)}",
                failures,
            )

    guarded(body, chosen)


def _plain(value: Any) -> Any:
    """A setting as YAML writes it: maps, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def effective(host: HostConfig) -> dict[str, Any]:
    """Every inventory key of `host` with the value a deploy uses (recipe defaults and
    defaults included); secrets, webhooks and URL passwords as ***."""
    out: dict[str, Any] = {}
    for name, spec in KEYS.items():
        value = _plain(getattr(host, spec.field))
        if name == "secrets":
            value = {k: "***" for k in value}
        elif name == "webhook":
            value = ["***" for _ in value]
        elif name == "repository":
            value = redact_url_passwords(value)
        out[name] = value
    return out


@task(
    help={
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
        "stage": "stage, instead of `fab STAGE config`",
        "inventory": "inventory file",
    }
)
def config(c, hosts=None, roles=None, stage=None, inventory=None):
    """Print the configuration each host of the stage is deployed with (secrets masked)."""
    inv, stage = selection(c, stage, inventory)
    chosen = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        text = yaml.safe_dump(
            {h.name: effective(h) for h in chosen}, sort_keys=False, allow_unicode=True
        )
        for line in text.splitlines():
            reporter.line(line)

    guarded(body, chosen)


__all__ = ["config", "run_command", "ssh"]
