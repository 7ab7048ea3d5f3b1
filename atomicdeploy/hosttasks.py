"""Tasks that reach into the live release for the user: `ssh` (Deployer's `dep ssh`) and
`run` (Deployer's `dep run`), through the same connection settings as a deploy."""

from __future__ import annotations

from invoke import Exit, task

from . import pipeline
from .errors import EXIT_USAGE, AtomicDeployError, FleetError
from .report import Reporter
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


__all__ = ["run_command", "ssh"]
