"""The Fabric layer: stage tasks from the inventory, and deploy, rollback, releases, unlock.

Each task parses its options, loads the inventory once, calls the pipeline and
turns an expected failure into one line and an exit code (never a traceback).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from invoke import Collection, Exit, Task, task

from . import gitsource, pipeline, plan, sources
from . import inventory as inventory_mod
from .errors import EXIT_USAGE, AtomicDeployError, ConfigError, FleetError
from .hooks import Hooks
from .hosttasks import config, run_command, ssh
from .inventory import Inventory
from .report import Reporter
from .steps.lock import describe_owner
from .taskbase import (
    DEFAULT_INVENTORY,
    ENV_INVENTORY,
    HOSTS_HELP,
    ROLES_HELP,
    chosen_hosts,
    default_inventory_path,
    guarded,
    python_hooks,
    release_option,
    say_split,
    selection,
)


@task(
    help={
        "source": "local directory to upload (default: the inventory's `source`; with"
        " `repository:`, a directory of the commit)",
        "branch": "branch of `repository:` to deploy (default: the inventory's `branch`, else"
        " the remote's default branch)",
        "rebuild": "run `build:` again even if this commit was built with the same commands",
        "stage": "stage to deploy, instead of `fab STAGE deploy`",
        "inventory": f"inventory file (default: ${ENV_INVENTORY} or {DEFAULT_INVENTORY})",
        "parallel": "hosts worked on at once (default: the inventory's `parallel`)",
        "allow_partial": "if go-live fails on some hosts, keep the others on the new release"
        " (default: switch them back, so the stage is never split)",
        "batch": "rolling go-live: N hosts (or N%) at a time, health check between batches",
        "canary": "go live on this many hosts first; the rest only if their health check passes",
        "revision": "git ref (branch, tag, commit) to deploy: exported from `repository:` (else"
        " the local repository) with `git archive`, recorded in the log and a REVISION file",
        "force": "deploy even if that revision is already live on every host",
        "dry_run": "print every remote command and transfer the deploy would make; change nothing",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
    }
)
def deploy(
    c,
    source=None,
    stage=None,
    inventory=None,
    parallel=0,
    allow_partial=False,
    batch=None,
    canary=0,
    revision=None,
    force=False,
    dry_run=False,
    hosts=None,
    roles=None,
    branch=None,
    rebuild=False,
):
    """Build a new release on every host of the stage (or of --hosts/--roles), then switch
    them all to it."""
    inv, stage = selection(c, stage, inventory)
    chosen = chosen_hosts(inv, stage, hosts, roles)
    hooks = python_hooks(c)

    def body(reporter: Reporter) -> None:
        opts = pipeline.Options(
            stage=stage,
            parallel=parallel or None,
            allow_partial=allow_partial,
            batch=batch,
            canary=int(canary or 0),
            force=force,
            dry_run=dry_run,
        )
        plan.plan_batches([h.name for h in chosen], batch, opts.canary)  # before any build
        choice = sources.Choice(source, revision, branch, rebuild)
        where = inv.path.resolve().parent
        with sources.release_tree(
            chosen, where, choice, pipeline.resolve_source, reporter.line
        ) as tree:
            opts = replace(opts, revision=tree.revision, tag=tree.tag)
            out = pipeline.deploy(
                chosen, opts, reporter, source=tree.path, fabric_config=c.config, hooks=hooks
            )
        name = next(iter(out.release.values()))
        if out.unchanged or dry_run:
            return
        reporter.line(f"deployed {name} to {stage} ({len(chosen)} host(s))")
        say_split(c, reporter, inv, stage, dict(out.release))

    guarded(body, chosen)


@task(
    help={
        "release": "release to go back to (default: the previous complete release on each host)",
        "stage": "stage to roll back, instead of `fab STAGE rollback`",
        "inventory": f"inventory file (default: ${ENV_INVENTORY} or {DEFAULT_INVENTORY})",
        "parallel": "hosts worked on at once",
        "dry_run": "print every remote command the rollback would make; change nothing",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
    }
)
def rollback(
    c, release=None, stage=None, inventory=None, parallel=0, dry_run=False, hosts=None, roles=None
):
    """Switch every host of the stage (or of --hosts/--roles) back to its previous complete
    release."""
    release = release_option(release)
    inv, stage = selection(c, stage, inventory)
    chosen = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        opts = pipeline.Options(
            stage=stage, release=release, parallel=parallel or None, dry_run=dry_run
        )
        out = pipeline.rollback(chosen, opts, reporter, fabric_config=c.config)
        targets = sorted(set(out.release.values()))
        if not dry_run:
            reporter.line(f"rolled back {stage} to {', '.join(targets)} ({len(chosen)} host(s))")
            say_split(c, reporter, inv, stage, dict(out.release))

    guarded(body, chosen)


@task(
    help={
        "release": "release to point the hosts at (already uploaded; nothing is uploaded)",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
        "stage": "stage, instead of `fab STAGE switch`",
        "inventory": "inventory file",
    }
)
def switch(c, release=None, hosts=None, stage=None, inventory=None, roles=None):
    """Point some hosts at an already-uploaded release (an A/B test: half the hosts on each).

    Through the same switch, nginx and opcache steps as a deploy; uploads nothing."""
    inv, stage = selection(c, stage, inventory)
    if not release:
        raise Exit("switch needs --release NAME (see `fab STAGE releases`)", code=EXIT_USAGE)
    release = release_option(release)
    chosen = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        opts = pipeline.Options(stage=stage, release=release, switch_only=True)
        pipeline.rollback(chosen, opts, reporter, fabric_config=c.config)
        reporter.line(f"switched {', '.join(x.name for x in chosen)} to {release}")
        say_split(c, reporter, inv, stage, {x.name: release for x in chosen})

    guarded(body, chosen)


@task(
    help={
        "stage": "stage to list",
        "inventory": "inventory file",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
    }
)
def releases(c, stage=None, inventory=None, hosts=None, roles=None):
    """List each host's releases: name, state, revision, time, and which one is live."""
    inv, stage = selection(c, stage, inventory)
    hosts = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        states, failures = pipeline.read_states(
            hosts, reporter, stage=stage, fabric_config=c.config
        )
        homed = {h.name for h in hosts if h.deploy_path.startswith("~/")}
        for name, state in states.items():
            reporter.line(f"{name}:")
            if name in homed:
                reporter.line(f"  deploy_path: {state.deploy_path}")
            rows = [
                (
                    r.name + (" *" if r.live else ""),
                    r.state,
                    r.revision or "-",
                    r.created or "-",
                    r.user or "-",
                )
                for r in state.releases
            ]
            if rows:
                reporter.table(("release", "state", "revision", "created", "user"), rows)
            else:
                reporter.line("  no releases")
            if state.lock_owner:
                reporter.line(f"  locked by {describe_owner(state.lock_owner)}")
        if failures:
            raise FleetError(f"could not read {len(failures)} host(s)", failures)

    guarded(body, hosts)


@task(
    help={
        "stage": "stage to unlock",
        "inventory": "inventory file",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
    }
)
def unlock(c, stage=None, inventory=None, hosts=None, roles=None):
    """Remove the deploy lock on every host of the stage (after a deploy that died)."""
    inv, stage = selection(c, stage, inventory)
    hosts = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        owners, failures = pipeline.force_unlock(
            hosts, reporter, stage=stage, fabric_config=c.config
        )
        for name, owner in owners.items():
            held = f"removed the lock of {describe_owner(owner)}" if owner else "was not locked"
            reporter.host(name, held)
        if failures:
            raise FleetError(f"unlock failed on {len(failures)} host(s)", failures)

    guarded(body, hosts)


@task(
    help={
        "stage": "stage to inspect",
        "inventory": "inventory file",
        "hosts": HOSTS_HELP,
        "roles": ROLES_HELP,
    }
)
def status(c, stage=None, inventory=None, hosts=None, roles=None):
    """Per host: live release, revision, lock, and whether nginx serves it (read-only).

    Then whether the hosts agree. Reads only; takes no lock."""
    inv, stage = selection(c, stage, inventory)
    hosts = chosen_hosts(inv, stage, hosts, roles)

    def body(reporter: Reporter) -> None:
        found, failures = pipeline.read_status(hosts, reporter, stage=stage, fabric_config=c.config)
        rows = []
        for name, st in found.items():
            lock = describe_owner(st.state.lock_owner) if st.state.lock_owner else "-"
            rows.append(
                (name, st.state.current or "(none)", st.revision[:12] or "-", st.nginx, lock)
            )
        reporter.table(("host", "live release", "revision", "nginx", "lock"), rows, indent="")
        live = {(st.state.current, st.revision) for st in found.values()}
        if len(live) > 1:
            reporter.line(f"hosts disagree: {len(live)} different live releases")
            where = {name: st.state.current for name, st in found.items()}
            reporter.line(plan.split_line(where, list(where)))
        elif found:
            reporter.line("all hosts serve the same release")
        if any(st.nginx == "points elsewhere" for st in found.values()):
            reporter.line("nginx does not point at the live release on some host(s)")
        if failures:
            raise FleetError(f"could not read {len(failures)} host(s)", failures)

    guarded(body, hosts)


@task(
    name="tag-release",
    help={
        "bump": "which part of the last version tag to increase: patch (default), minor, major",
        "version": "the exact version to tag instead (e.g. v2.0.0)",
        "ref": "commit to tag (default: HEAD)",
        "message": "tag message (default: 'Release VERSION')",
        "repo": "git repository (default: the current directory)",
    },
)
def tag_release(c, bump="patch", version=None, ref="HEAD", message=None, repo="."):
    """Create an annotated git tag for the next version; push it yourself.

    A deploy of a tagged revision puts the tag in the release name."""

    def body(reporter: Reporter) -> None:
        if bump not in ("patch", "minor", "major"):
            raise ConfigError(f"--bump must be patch, minor or major, not {bump!r}")
        root = gitsource.repo_root(Path(repo))
        name = gitsource.tag_release(root, ref=ref, bump=bump, version=version, message=message)
        reporter.line(f"tagged {ref} as {name} (push it: git push origin {name})")

    guarded(body)


def stage_task(name: str, inv: Inventory) -> Task:
    """`fab NAME ...`: select a stage for the tasks that follow on the command line.

    The inventory read to make the stage tasks is handed to those tasks: one `fab`
    invocation reads and checks it once."""

    def select(c):
        # Keep what install()/namespace() put there (the hooks).
        chosen = dict(c.config.get("atomicdeploy") or {})
        chosen.update(stage=name, inventory=str(inv.path.resolve()), loaded=inv)
        c.config.atomicdeploy = chosen

    select.__doc__ = f"Select stage {name}: {', '.join(inv.stages[name])}."
    select.__name__ = name
    return Task(select, name=name)


TASKS = (
    deploy,
    rollback,
    switch,
    releases,
    status,
    unlock,
    ssh,
    run_command,
    config,
    tag_release,
)


def stage_tasks(inventory: str | os.PathLike[str] | None = None) -> list[Task]:
    """One task per `labels.stage` in the inventory; none if there is no inventory file.

    An inventory that exists but is invalid stops `fab` at once with its one-line error:
    every task would fail on it anyway.
    """
    path = Path(inventory) if inventory else default_inventory_path()
    if not path.exists():
        return []
    try:
        inv = inventory_mod.load(path)
    except AtomicDeployError as exc:
        print(f"atomicdeploy: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    return [stage_task(name, inv) for name in inv.stages]


def namespace(
    inventory: str | os.PathLike[str] | None = None, *, hooks: Hooks | None = None
) -> Collection:
    """A ready Collection: the tasks plus a stage task per stage of the inventory."""
    ns = Collection()
    install(ns, inventory, hooks=hooks)
    return ns


def install(
    ns: Collection, inventory: str | os.PathLike[str] | None = None, *, hooks: Hooks | None = None
) -> Collection:
    """Add atomicdeploy's tasks and stage tasks to an existing fabfile's collection.

    `hooks` reach the tasks through the collection's configuration (no module global).
    """
    for t in TASKS:
        ns.add_task(t)
    for t in stage_tasks(inventory):
        ns.add_task(t)
    if hooks is not None:
        ns.configure({"atomicdeploy": {"hooks": hooks}})
    return ns


__all__ = [
    "deploy",
    "install",
    "namespace",
    "releases",
    "rollback",
    "status",
    "switch",
    "tag_release",
    "unlock",
]
