"""The Fabric layer: stage tasks from the inventory, and deploy, rollback, releases, unlock.

Each task parses its options, loads the inventory once, calls the pipeline and
turns an expected failure into one line and an exit code (never a traceback).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fabric import Connection
from invoke import Collection, Context, Exit, Task, task

from . import gitsource, pipeline, secrets
from . import inventory as inventory_mod
from .errors import EXIT_INTERRUPTED, EXIT_USAGE, AtomicDeployError, ConfigError, FleetError
from .hooks import Hooks
from .inventory import HostConfig, Inventory
from .layout import check_release_name
from .report import Reporter
from .steps.lock import describe_owner

ENV_INVENTORY = "ATOMICDEPLOY_INVENTORY"
DEFAULT_INVENTORY = "inventory.yml"


def default_inventory_path() -> Path:
    return Path(os.environ.get(ENV_INVENTORY) or DEFAULT_INVENTORY)


def _selection(c: Context, stage: str | None, inventory: str | None) -> tuple[Inventory, str]:
    """Which inventory and stage this task runs on: options first, then the stage task."""
    if isinstance(c, Connection):
        raise Exit(
            "atomicdeploy takes its hosts from the inventory: do not combine it with -H",
            code=EXIT_USAGE,
        )
    chosen = c.config.get("atomicdeploy") or {}
    path = Path(inventory or chosen.get("inventory") or default_inventory_path())
    stage = stage or chosen.get("stage")
    try:
        inv = inventory_mod.load(path)
    except AtomicDeployError as exc:
        raise Exit(str(exc), code=exc.exit_code) from None
    if not stage:
        stages = ", ".join(sorted(inv.stages)) or "none defined"
        raise Exit(
            f"no stage selected: run e.g. `fab {next(iter(sorted(inv.stages)), 'prod')}"
            f" deploy` (stages: {stages})",
            code=EXIT_USAGE,
        )
    return inv, stage


def _release_option(release: str | None) -> str | None:
    """`--release` names one directory under releases/: checked before any host is contacted."""
    if release is None:
        return None
    try:
        return check_release_name(release)
    except ConfigError as exc:
        raise Exit(f"--release: {exc.message}", code=EXIT_USAGE) from None


def _hooks(c: Context) -> Hooks:
    """Python hooks given to `namespace(hooks=...)`/`install(...)`, else none."""
    found = (c.config.get("atomicdeploy") or {}).get("hooks")
    return found if isinstance(found, Hooks) else Hooks()


def _masker(hosts: Sequence[HostConfig]) -> Callable[[str], str]:
    """Webhook URLs, `secrets:` values and the passwords inside the health-check and opcache
    URLs become *** in everything we print (any other URL's password too: see Masker.mask)."""
    values = [v for h in hosts for v in (*h.webhook, *h.secrets.values())]
    urls = [h.healthcheck.url for h in hosts if h.healthcheck]
    urls += [h.opcache.url for h in hosts if h.opcache.url]
    return secrets.Masker.of([*values, *secrets.url_passwords(urls)]).mask


def _hosts(inv: Inventory, stage: str) -> tuple[HostConfig, ...]:
    try:
        return inv.stage(stage)
    except AtomicDeployError as exc:
        raise Exit(str(exc), code=exc.exit_code) from None


def _report_failure(reporter: Reporter, exc: AtomicDeployError) -> None:
    if isinstance(exc, FleetError):
        for name, err in exc.failures.items():
            reporter.error(_one_line(name, err))
    reporter.error(f"atomicdeploy: {exc.message if isinstance(exc, FleetError) else exc}")


def _one_line(name: str, err: BaseException) -> str:
    if isinstance(err, AtomicDeployError):
        where = f" at step '{err.step}'" if err.step else ""
        live = "live" if err.live else "not live"
        return f"[{name}] failed{where} ({live}): {err.message}"
    return f"[{name}] failed: {type(err).__name__}: {err}"


def _guarded(body: Callable[[Reporter], Any], hosts: Sequence[HostConfig] = ()) -> Any:
    """Run a task body: expected failures become one line per host and an exit code.

    SIGTERM (a cancelled CI job) is handled like Ctrl-C: the pipeline cleans up what
    it started (or finishes a go-live it began) and we exit 130.
    """
    reporter = Reporter(mask=_masker(hosts))
    old = _sigterm_as_interrupt()
    try:
        return body(reporter)
    except AtomicDeployError as exc:
        reporter.end_progress()
        _report_failure(reporter, exc)
        raise Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.end_progress()
        reporter.error(
            "atomicdeploy: interrupted; see the lines above for what each host"
            " was left with (exit 130)"
        )
        raise Exit(code=EXIT_INTERRUPTED) from None
    finally:
        reporter.end_progress()
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def _release_source(
    src: str, revision: str | None, opts: pipeline.Options
) -> Iterator[tuple[str, pipeline.Options]]:
    """The directory to upload: `src` itself, or with --revision a temporary export of that
    commit (removed afterwards), with the commit and its version tag in the options."""
    if not revision:
        yield src, opts
        return
    with gitsource.exported(Path(src), Path(src), revision) as (commit, tree):
        tag = gitsource.tag_of(gitsource.repo_root(Path(src)), commit) or ""
        yield str(tree), replace(opts, revision=commit, tag=tag)


@task(
    help={
        "source": "local directory to upload (default: the inventory's `source`)",
        "stage": "stage to deploy, instead of `fab STAGE deploy`",
        "inventory": f"inventory file (default: ${ENV_INVENTORY} or {DEFAULT_INVENTORY})",
        "parallel": "hosts worked on at once (default: the inventory's `parallel`)",
        "allow_partial": "if go-live fails on some hosts, keep the others on the new release"
        " (default: switch them back, so the stage is never split)",
        "batch": "rolling go-live: N hosts (or N%) at a time, health check between batches",
        "canary": "go live on this many hosts first; the rest only if their health check passes",
        "revision": "git ref (branch, tag, commit) to deploy: exported from the local repository"
        " with `git archive`, recorded in the log and a REVISION file",
        "force": "deploy even if that revision is already live on every host",
        "dry_run": "print every remote command and transfer the deploy would make; change nothing",
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
):
    """Build a new release on every host of the stage, then switch them all to it."""
    inv, stage = _selection(c, stage, inventory)
    hosts = _hosts(inv, stage)
    hooks = _hooks(c)

    def body(reporter: Reporter) -> None:
        hooks.check()
        src = pipeline.resolve_source(hosts, inv.path.resolve().parent, source)
        opts = pipeline.Options(
            stage=stage,
            parallel=parallel or None,
            allow_partial=allow_partial,
            batch=batch,
            canary=int(canary or 0),
            force=force,
            dry_run=dry_run,
        )
        pipeline.plan_batches([h.name for h in hosts], batch, opts.canary)  # bad input: exit 2
        with _release_source(src, revision, opts) as (upload_dir, opts):
            out = pipeline.deploy(
                hosts, opts, reporter, source=upload_dir, fabric_config=c.config, hooks=hooks
            )
        name = next(iter(out.release.values()))
        if out.unchanged or dry_run:
            return
        reporter.line(f"deployed {name} to {stage} ({len(hosts)} host(s))")

    _guarded(body, hosts)


@task(
    help={
        "release": "release to go back to (default: the previous complete release on each host)",
        "stage": "stage to roll back, instead of `fab STAGE rollback`",
        "inventory": f"inventory file (default: ${ENV_INVENTORY} or {DEFAULT_INVENTORY})",
        "parallel": "hosts worked on at once",
        "dry_run": "print every remote command the rollback would make; change nothing",
    }
)
def rollback(c, release=None, stage=None, inventory=None, parallel=0, dry_run=False):
    """Switch every host of the stage back to its previous complete release."""
    release = _release_option(release)
    inv, stage = _selection(c, stage, inventory)
    hosts = _hosts(inv, stage)

    def body(reporter: Reporter) -> None:
        opts = pipeline.Options(
            stage=stage, release=release, parallel=parallel or None, dry_run=dry_run
        )
        out = pipeline.rollback(hosts, opts, reporter, fabric_config=c.config)
        targets = sorted(set(out.release.values()))
        if not dry_run:
            reporter.line(f"rolled back {stage} to {', '.join(targets)} ({len(hosts)} host(s))")

    _guarded(body, hosts)


@task(
    help={
        "release": "release to point the hosts at (already uploaded; nothing is uploaded)",
        "hosts": "comma-separated host names (default: every host of the stage)",
        "stage": "stage, instead of `fab STAGE switch`",
        "inventory": "inventory file",
    }
)
def switch(c, release=None, hosts=None, stage=None, inventory=None):
    """Point some hosts at an already-uploaded release (an A/B test: half the hosts on each).

    Through the same switch, nginx and opcache steps as a deploy; uploads nothing."""
    inv, stage = _selection(c, stage, inventory)
    if not release:
        raise Exit("switch needs --release NAME (see `fab STAGE releases`)", code=EXIT_USAGE)
    release = _release_option(release)
    chosen = _hosts(inv, stage)
    if hosts:
        wanted = [h.strip() for h in hosts.split(",") if h.strip()]
        unknown = [h for h in wanted if h not in {x.name for x in chosen}]
        if unknown:
            raise Exit(
                f"--hosts: {', '.join(unknown)} not in stage {stage}"
                f" ({', '.join(x.name for x in chosen)})",
                code=EXIT_USAGE,
            )
        chosen = tuple(x for x in chosen if x.name in wanted)

    def body(reporter: Reporter) -> None:
        opts = pipeline.Options(stage=stage, release=release, switch_only=True)
        pipeline.rollback(chosen, opts, reporter, fabric_config=c.config)
        reporter.line(f"switched {', '.join(x.name for x in chosen)} to {release}")

    _guarded(body, chosen)


@task(help={"stage": "stage to list", "inventory": "inventory file"})
def releases(c, stage=None, inventory=None):
    """List each host's releases: name, state, revision, time, and which one is live."""
    inv, stage = _selection(c, stage, inventory)
    hosts = _hosts(inv, stage)

    def body(reporter: Reporter) -> None:
        states, failures = pipeline.read_states(
            hosts, reporter, stage=stage, fabric_config=c.config
        )
        for name, state in states.items():
            reporter.line(f"{name}:")
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

    _guarded(body, hosts)


@task(help={"stage": "stage to unlock", "inventory": "inventory file"})
def unlock(c, stage=None, inventory=None):
    """Remove the deploy lock on every host of the stage (after a deploy that died)."""
    inv, stage = _selection(c, stage, inventory)
    hosts = _hosts(inv, stage)

    def body(reporter: Reporter) -> None:
        owners, failures = pipeline.force_unlock(
            hosts, reporter, stage=stage, fabric_config=c.config
        )
        for name, owner in owners.items():
            held = f"removed the lock of {describe_owner(owner)}" if owner else "was not locked"
            reporter.host(name, held)
        if failures:
            raise FleetError(f"unlock failed on {len(failures)} host(s)", failures)

    _guarded(body, hosts)


@task(help={"stage": "stage to inspect", "inventory": "inventory file"})
def status(c, stage=None, inventory=None):
    """Per host: live release, revision, lock, and whether nginx serves it (read-only).

    Then whether the hosts agree. Reads only; takes no lock."""
    inv, stage = _selection(c, stage, inventory)
    hosts = _hosts(inv, stage)

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
        elif found:
            reporter.line("all hosts serve the same release")
        if any(st.nginx == "points elsewhere" for st in found.values()):
            reporter.line("nginx does not point at the live release on some host(s)")
        if failures:
            raise FleetError(f"could not read {len(failures)} host(s)", failures)

    _guarded(body, hosts)


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

    _guarded(body)


def stage_task(name: str, hosts: tuple[str, ...], inventory: Path) -> Task:
    """`fab NAME ...`: select a stage for the tasks that follow on the command line."""

    def select(c):
        # Keep what install()/namespace() put there (the hooks).
        chosen = dict(c.config.get("atomicdeploy") or {})
        chosen.update(stage=name, inventory=str(inventory))
        c.config.atomicdeploy = chosen

    select.__doc__ = f"Select stage {name}: {', '.join(hosts)}."
    select.__name__ = name
    return Task(select, name=name)


TASKS = (deploy, rollback, switch, releases, status, unlock, tag_release)


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
    return [stage_task(name, hosts, path.resolve()) for name, hosts in inv.stages.items()]


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
