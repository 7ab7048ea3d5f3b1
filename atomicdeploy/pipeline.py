"""The entry points: deploy, rollback (and switch), and the read-only and repair tasks.

Each builds the hosts' configs and a run (run.py) and hands it its phases: the deploy's are
in deploying.py, the go-live of every run in golive.py, the decisions in plan.py. Around
the phases: webhook notifications, the `on_failure` hooks, and in a dry run the list of what
would have been run.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import paramiko
from fabric import Config as FabricConfig

from . import dryrun, goback, golive, homes, shell
from .config import Config, RunInfo
from .connection import connect, describe_connect_error
from .deploying import Deploy
from .errors import AtomicDeployError, ConfigError, RemoteError
from .hooks import Hooks
from .inventory import HostConfig
from .plan import Options, Outcome, plan_batches
from .remote import Remote
from .report import Reporter
from .run import Run, fail, notifier
from .runner import Fleet
from .steps import command, lock, setup, status

__all__ = ["Options", "Outcome", "deploy", "plan_batches", "rollback"]

T = TypeVar("T")


def run_info(stage: str, source: str = "", revision: str = "") -> RunInfo:
    return RunInfo(
        stage=stage,
        user=_deploying_user(),
        local_host=socket.gethostname(),
        pid=os.getpid(),
        started=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        token=uuid.uuid4().hex,
        source=source,
        revision=revision,
    )


def _deploying_user() -> str:
    for var in ("ATOMICDEPLOY_USER", "GITHUB_ACTOR", "GITLAB_USER_LOGIN"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def resolve_source(hosts: Sequence[HostConfig], inventory_dir: Path, override: str | None) -> str:
    """The local directory to upload: checked before any host is contacted."""
    sources = {override} if override else {h.source for h in hosts}
    if len(sources) > 1:
        raise ConfigError(f"hosts of one stage must share one source, found {sorted(sources)}")
    raw = sources.pop()
    base = Path.cwd() if override else inventory_dir
    path = (base / os.path.expanduser(raw)).resolve()
    if not path.is_dir():
        where = "--source" if override else "source"
        raise ConfigError(f"{where}: local directory {raw!r} does not exist ({path})")
    return str(path)


def deploy(
    hosts: Sequence[HostConfig],
    opts: Options,
    reporter: Reporter,
    *,
    source: str,
    fabric_config: FabricConfig | None = None,
    hooks: Hooks | None = None,
) -> Outcome:
    """Build a release on every host, then switch every host to it."""
    hooks = hooks if hooks is not None else Hooks()
    hooks.check()  # bad input stops here, before any host is contacted
    plan_batches([h.name for h in hosts], opts.batch, opts.canary)
    info = run_info(opts.stage, source, opts.revision)
    with dryrun.hosts(hosts, opts.dry_run) as hosts:
        hosts = homes.resolve(hosts, reporter, fabric_config)
        peers = tuple((h.name, h.roles) for h in hosts)
        cfgs = {
            h.name: Config(host=h, run=info, primary=i == 0, peers=peers)
            for i, h in enumerate(hosts)
        }
        fleet = Fleet(
            hosts, reporter, parallel=opts.parallel, fabric_config=fabric_config, dry=opts.dry_run
        )
        run = Deploy(fleet, cfgs, opts, reporter, hooks)
        tell = notifier("deploy", hosts, info, opts, reporter, run.outcome)
        try:
            tell("start")
            try:
                run.run()
            except (AtomicDeployError, KeyboardInterrupt) as exc:
                tell("failure", exc)
                # Only once a release was named, i.e. every host is locked by us: never
                # while someone else's deploy holds the stage.
                if not opts.dry_run and isinstance(exc, AtomicDeployError) and run.outcome.release:
                    run.failure_hooks(exc)
                raise
            tell("success")
            return run.outcome
        finally:
            _close(run)


def _close(run: Run) -> None:
    if run.opts.dry_run:
        run.outcome.planned = dryrun.print_plan(run.reporter, run.fleet)
    run.fleet.close()


def rollback(
    hosts: Sequence[HostConfig],
    opts: Options,
    reporter: Reporter,
    *,
    fabric_config: FabricConfig | None = None,
) -> Outcome:
    """Switch every host back to its previous complete release (or to `opts.release`),
    with the same webhook notifications as a deploy."""
    info = run_info(opts.stage)
    with dryrun.hosts(hosts, opts.dry_run) as hosts:
        hosts = homes.resolve(hosts, reporter, fabric_config)
        fleet = Fleet(
            hosts, reporter, parallel=opts.parallel, fabric_config=fabric_config, dry=opts.dry_run
        )
        run = Run(fleet, {h.name: Config(host=h, run=info) for h in hosts}, opts, reporter)
        tell = notifier(opts.action, hosts, info, opts, reporter, run.outcome)
        try:
            tell("start")
            try:
                if goback.eligible(run):
                    goback.rollback(run)
                else:
                    _choose_targets(run)
                    golive.go_back(run)
            except (AtomicDeployError, KeyboardInterrupt) as exc:
                tell("failure", exc)
                raise
            tell("success")
            return run.outcome
        finally:
            _close(run)


def _choose_targets(run: Run) -> None:
    """Lock and read every host, and choose each one's target; if any host has none, unlock
    all and stop before anything moves."""
    states = run.lock_and_read(upload=False)
    problems: dict[str, BaseException] = {}
    for n, state in states.items():
        try:
            target = goback.choose(run, n, state)
        except AtomicDeployError as exc:
            problems[n] = exc
            continue
        run.cfgs[n] = replace(run.cfgs[n], release=target, previous=state.current)
        run.outcome.release[n], run.outcome.previous[n] = target, state.current
    if problems:
        run.unlock(run.names)
        raise fail(run.opts.action, problems, len(run.cfgs))


def _on_each_host(
    step: Callable[[Remote, Config], T],
    hosts: Sequence[HostConfig],
    reporter: Reporter,
    stage: str,
    fabric_config: FabricConfig | None,
):
    """One step on every host, without the lock: for the read-only and repair tasks."""
    run = run_info(stage)
    hosts = homes.resolve(hosts, reporter, fabric_config)
    fleet = Fleet(hosts, reporter, fabric_config=fabric_config)
    try:
        return fleet.each(lambda r: step(r, Config(host=fleet.hosts[r.name], run=run)), wide=True)
    finally:
        fleet.close()


def read_states(
    hosts: Sequence[HostConfig],
    reporter: Reporter,
    *,
    stage: str,
    fabric_config: FabricConfig | None = None,
):
    """Every host's releases and lock, read without taking the lock."""
    return _on_each_host(setup.read_state, hosts, reporter, stage, fabric_config)


def read_status(
    hosts: Sequence[HostConfig],
    reporter: Reporter,
    *,
    stage: str,
    fabric_config: FabricConfig | None = None,
):
    """Every host's live release, revision, lock and nginx include, without the lock."""
    return _on_each_host(status.read, hosts, reporter, stage, fabric_config)


def force_unlock(
    hosts: Sequence[HostConfig],
    reporter: Reporter,
    *,
    stage: str,
    fabric_config: FabricConfig | None = None,
):
    """Remove every host's lock, whoever holds it; return who held each."""
    return _on_each_host(lock.force_unlock, hosts, reporter, stage, fabric_config)


def run_command(
    hosts: Sequence[HostConfig],
    reporter: Reporter,
    cmd: str,
    *,
    stage: str,
    fabric_config: FabricConfig | None = None,
):
    """`cmd` in the live release of every host at once; each host's exit status."""
    return _on_each_host(
        lambda r, cfg: command.run(r, cfg, cmd), hosts, reporter, stage, fabric_config
    )


def login(host: HostConfig, fabric_config: FabricConfig | None = None) -> int:
    """An interactive login shell in the host's live release, over the same connection
    settings as a deploy (ssh_config, port, key, known_hosts); returns its exit status."""
    (host,) = homes.resolve([host], Reporter(), fabric_config)
    conn = connect(host, (fabric_config or FabricConfig()).clone())
    conn.config.timeouts.command = None  # a shell stays open as long as its user wants
    layout = Config(host=host, run=run_info("")).layout
    try:
        result = conn.run(
            shell.login_shell(layout.current, layout.deploy_path),
            pty=True,
            in_stream=sys.stdin,
            warn=True,
        )
        return result.exited
    except (OSError, paramiko.SSHException) as exc:  # refused, auth, host key, DNS
        raise RemoteError(describe_connect_error(host, exc), host=host.name, step="ssh") from exc
    finally:
        conn.close()
