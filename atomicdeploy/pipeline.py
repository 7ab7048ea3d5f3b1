"""What a deploy and a rollback do, phase by phase, on every host of a stage.

Deploy:   setup+lock -> (name the release) -> prepare: release, upload, shared, writable,
          vendors, nginx check, warm-up, with the hooks around each -> barrier -> `once`
          commands of before_switch on the first host -> go live: switch (in batches if
          asked, health checks) -> finish: after-switch hooks, cleanup, unlock.
Rollback: setup+lock -> (choose targets; all must exist) -> go live: switch -> unlock.
Nothing goes live anywhere unless every host has prepared; a failure before the
switch removes the new release and releases the lock on every host.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from fabric import Config as FabricConfig

from . import dryrun, notify, plan
from .config import Config, RunInfo
from .errors import (
    EXIT_LIVE_HOOK_FAILED,
    EXIT_PARTIAL,
    AtomicDeployError,
    ConfigError,
    FleetError,
)
from .hooks import FAILURE, Hooks
from .inventory import HostConfig
from .releases import (
    FAILED,
    GOOD,
    LIVE,
    ROLLED_BACK,
    HostState,
    new_release_name,
    rollback_target,
)
from .remote import Remote
from .report import Reporter
from .runner import WIDE, Fleet
from .steps import (
    build,
    cleanup,
    health,
    hook,
    lock,
    release,
    setup,
    status,
    switch,
    upload,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    stage: str
    release: str | None = None  # rollback: the release to go back to
    parallel: int | None = None
    allow_partial: bool = False  # keep the hosts that went live if others fail at go-live
    batch: str | None = None  # rolling go-live: "N" hosts or "N%" of the stage per batch
    canary: int = 0  # go live on this many hosts first, check their health, then the rest
    switch_only: bool = False  # `fab STAGE switch`: go to `release`, the old one is not "bad"
    dry_run: bool = False  # record every command that changes something; change nothing
    force: bool = False  # deploy even if the revision is already live everywhere
    revision: str = ""  # full commit id the source was exported from (`--revision`)
    tag: str = ""  # version tag of that commit, appended to the release name


@dataclass
class Outcome:
    """What happened on each host, for the summary and for tests."""

    release: dict[str, str] = field(default_factory=dict)
    previous: dict[str, str | None] = field(default_factory=dict)
    uploads: dict[str, object] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    switched_at: dict[str, float] = field(default_factory=dict)  # host clock after the rename
    result: dict[str, str] = field(default_factory=dict)  # per host, for the summary
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    planned: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # dry run
    unchanged: bool = False  # the revision was already live everywhere: nothing done

    @property
    def skew(self) -> float | None:
        """Seconds between the first and the last host's switch, from the hosts' clocks."""
        times = list(self.switched_at.values())
        return max(times) - min(times) if len(times) > 1 else (0.0 if times else None)


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


def _fail(
    phase: str, failures: dict[str, BaseException], total: int, note: str = "", **kw
) -> FleetError:
    names = ", ".join(failures)
    return FleetError(
        f"{phase} failed on {len(failures)}/{total} host(s): {names}{note}", failures, **kw
    )


def _switch_back(
    fleet: Fleet, cfgs: dict[str, Config], names: list[str], name: str, why: str, outcome: Outcome
) -> list[str]:
    """Switch `names` back to the release each had before `name`, through the same steps.

    Returns the hosts that could not be switched back (they stay on `name`)."""

    def back(r: Remote) -> None:
        cfg = cfgs[r.name]
        if not cfg.previous:
            outcome.result[r.name] = "live (nothing to revert to)"
            lock.unlock(r, cfg)
            fleet.reporter.warn(r.name, f"{why}; no earlier release to go back to")
            return
        lines = [
            release.log_line(cfg, name, ROLLED_BACK, why),
            release.log_line(cfg, cfg.previous, LIVE, "reverted"),
        ]
        for text in switch.switch(r, cfg, cfg.previous, lines, unlock=True).warnings:
            fleet.reporter.warn(r.name, text)
        outcome.result[r.name] = f"reverted to {cfg.previous}"
        fleet.reporter.host(r.name, f"reverted: current -> releases/{cfg.previous} ({why})")

    _, failures = fleet.each(back, names, phase="revert", wide=True)
    for n, exc in failures.items():
        outcome.result[n] = "live (revert failed)"
        fleet.reporter.warn(n, f"revert failed, this host stays on the new release: {exc}")
    return list(failures)


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT/SIGTERM during the block: a go-live is finished (or reverted) whole.

    Yields the list of signals that arrived; the caller finishes its work (unlock)
    and then raises KeyboardInterrupt. Only the main thread can install handlers.
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def hold(signum, frame):
        pending.append(signum)

    old = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


ARM_TIMEOUT = 30.0  # seconds to wait for every host of a batch to be armed


def arm(names: list[str]) -> dict[str, switch.Trigger]:
    """Arm-then-fire for one go-live batch: a switch waits just before its rename until
    every host of the batch is waiting (or done), then all rename at once.

    Without it, each host renames when its own shell happens to get there, and the
    skew is a shell start plus a round trip; with it, one write per host. Used when
    every host of the batch can have a worker (the wide pool), else a waiting host
    could hold the worker another host needs to arm.
    """
    if not 1 < len(names) <= WIDE:
        return {}
    fire = threading.Event()
    triggers = {n: switch.Trigger(fire=fire, armed=threading.Event()) for n in names}

    def fire_when_armed() -> None:
        deadline = time.monotonic() + ARM_TIMEOUT
        for t in triggers.values():
            t.armed.wait(max(0.0, deadline - time.monotonic()))
        fire.set()

    threading.Thread(target=fire_when_armed, name="atomicdeploy-fire", daemon=True).start()
    return triggers


def plan_batches(names: list[str], batch: str | None, canary: int = 0) -> list[list[str]]:
    """Split the stage into go-live batches: an optional canary batch, then `batch`-sized
    ones ("3" hosts or "25%" of the stage), else everything at once."""
    if canary < 0:
        raise ConfigError(f"--canary must be a positive number of hosts, not {canary}")
    first, rest = (names[:canary], names[canary:]) if canary else ([], names)
    size = len(rest) or 1
    if batch:
        text = str(batch).strip()
        try:
            if text.endswith("%"):
                pct = float(text[:-1])
                if not 0 < pct <= 100:
                    raise ValueError
                size = max(1, math.ceil(len(names) * pct / 100))
            else:
                size = int(text)
                if size < 1:
                    raise ValueError
        except ValueError:
            raise ConfigError(
                f"--batch must be a number of hosts or a percentage, not {batch!r}"
            ) from None
    batches = [first] if first else []
    batches += [rest[i : i + size] for i in range(0, len(rest), size)]
    return [b for b in batches if b]


def _summary(reporter: Reporter, fleet: Fleet, outcome: Outcome) -> None:
    """One table at the end: host, release, result, seconds per phase; then the skew."""
    reporter.end_progress()
    outcome.timings = fleet.timings
    phases = [
        p
        for p in ("lock", "prepare", "once", "go-live", "health", "revert", "finish")
        if any(p in t for t in fleet.timings.values())
    ]
    rows = []
    for host in fleet.names:
        t = fleet.timings.get(host, {})
        rows.append(
            [
                host,
                outcome.release.get(host, "-"),
                outcome.result.get(host, "-"),
                *[f"{t[p]:.2f}" if p in t else "-" for p in phases],
            ]
        )
    reporter.line("")
    reporter.table(["host", "release", "result", *[f"{p} s" for p in phases]], rows, indent="")
    if outcome.skew is not None and len(outcome.switched_at) > 1:
        reporter.line(
            f"switch skew: {outcome.skew * 1000:.0f} ms between the first and the"
            f" last host's switch ({len(outcome.switched_at)} hosts)"
        )


def _lock_and_read(fleet: Fleet, cfgs: dict[str, Config], *, upload: bool) -> dict[str, HostState]:
    """setup + lock + state on every host; if any host fails, release the locks we took.

    The stage's first host is locked alone, before the others: of two deploys started
    at the same moment, the one that gets it gets every host, and the other stops
    there. (Locking all hosts at once, each could win some hosts and both would fail.)
    """
    names = list(cfgs)

    def begin(r: Remote) -> HostState:
        return setup.begin(r, cfgs[r.name], upload=upload)

    try:
        states, failures = fleet.each(begin, names[:1], phase="lock", wide=True)
        if not failures:
            rest, failures = fleet.each(begin, names[1:], phase="lock", wide=True)
            states.update(rest)
    except KeyboardInterrupt:
        # Which hosts we locked is not known here: release ours everywhere (the token
        # makes that safe: someone else's lock is never touched).
        _best_effort(fleet, lambda r: lock.unlock(r, cfgs[r.name]), names)
        fleet.reporter.error("interrupted while locking: nothing changed; our locks released")
        raise
    if failures:
        _best_effort(fleet, lambda r: lock.unlock(r, cfgs[r.name]), states)
        raise _fail("lock", failures, len(cfgs))
    return states


def _best_effort(fleet: Fleet, fn: Callable[[Remote], object], names) -> None:
    _, failures = fleet.each(fn, names)
    for name, exc in failures.items():
        fleet.reporter.warn(name, f"clean-up after failure: {exc}")


def deploy(
    hosts: Sequence[HostConfig],
    opts: Options,
    reporter: Reporter,
    *,
    source: str,
    fabric_config: FabricConfig | None = None,
    hooks: Hooks | None = None,
) -> Outcome:
    """Build a release on every host, then switch every host to it.

    Around the phases: webhook notifications (start, success, failure), the
    `on_failure` hooks on every host after a failure was cleaned up, and in a dry
    run the list of what would have been run.
    """
    hooks = hooks or Hooks()
    hooks.check()
    run = run_info(opts.stage, source, opts.revision)
    cfgs = {h.name: Config(host=h, run=run, primary=i == 0) for i, h in enumerate(hosts)}
    with dryrun.hosts(hosts, opts.dry_run) as hosts:
        cfgs = {h.name: replace(cfgs[h.name], host=h) for h in hosts}
        fleet = Fleet(
            hosts, reporter, parallel=opts.parallel, fabric_config=fabric_config, dry=opts.dry_run
        )
        outcome = Outcome()
        tell = _notifier("deploy", hosts, run, opts, reporter, outcome)
        try:
            tell("start")
            try:
                _deploy(fleet, cfgs, opts, reporter, hooks, outcome)
            except (AtomicDeployError, KeyboardInterrupt) as exc:
                tell("failure", exc)
                # Only once a release was named, i.e. every host is locked by us: never
                # while someone else's deploy holds the stage.
                if not opts.dry_run and isinstance(exc, AtomicDeployError) and outcome.release:
                    _failure_hooks(fleet, cfgs, hooks, exc)
                raise
            tell("success")
            return outcome
        finally:
            if opts.dry_run:
                outcome.planned = dryrun.print_plan(reporter, fleet)
            fleet.close()


def _deploy(
    fleet: Fleet,
    cfgs: dict[str, Config],
    opts: Options,
    reporter: Reporter,
    hooks: Hooks,
    outcome: Outcome,
) -> None:
    """The deploy as a short script of phases; each phase raises when the deploy stops."""
    states = _lock_and_read(fleet, cfgs, upload=True)
    if _already_live(fleet, cfgs, states, opts, outcome):
        return
    name = _name_release(cfgs, states, opts, reporter, outcome)
    created = _prepare(fleet, cfgs, opts, reporter, hooks, outcome)
    _once(fleet, cfgs, created)
    interrupted = _go_live(fleet, cfgs, opts, reporter, outcome, name)
    _finish(fleet, cfgs, states, opts, reporter, hooks, outcome, name, interrupted)


def _name_release(
    cfgs: dict[str, Config],
    states: dict[str, HostState],
    opts: Options,
    reporter: Reporter,
    outcome: Outcome,
) -> str:
    """One name for every host, computed here; the configs learn it and the live one."""
    run = next(iter(cfgs.values())).run
    taken = {r.name for s in states.values() for r in s.releases}
    name = new_release_name(datetime.now(UTC), taken, opts.tag)
    # Updated in place: the caller's on_failure hooks see the release and previous one.
    cfgs.update(
        {
            n: replace(c, release=name, previous=states[n].current, host_rsync=states[n].rsync)
            for n, c in cfgs.items()
        }
    )
    for n, c in cfgs.items():
        outcome.release[n], outcome.previous[n] = name, c.previous
    rev = f" (revision {run.revision[:12]})" if run.revision else ""
    dry = " (dry run: nothing is changed)" if opts.dry_run else ""
    reporter.line(f"deploying release {name}{rev} to {opts.stage}: {', '.join(cfgs)}{dry}")
    return name


def _prepare(
    fleet: Fleet,
    cfgs: dict[str, Config],
    opts: Options,
    reporter: Reporter,
    hooks: Hooks,
    outcome: Outcome,
) -> set[str]:
    """Every host builds the release; if any fails, none keeps it. Returns the hosts that
    started one (all of them, once this returns)."""
    created: set[str] = set()

    def prepare(r: Remote) -> object:
        cfg = cfgs[r.name]
        created.add(r.name)  # removing a release that was never made is harmless
        build.begin(r, cfg, hooks)
        stats = upload.upload(r, cfg)
        verb = "would upload" if opts.dry_run else "uploaded"
        reporter.host(
            r.name, f"{verb} {stats.files_transferred} changed file(s), {stats.bytes_sent} bytes"
        )
        build.build(r, cfg, hooks)
        return stats

    try:
        uploads, failures = fleet.each(prepare, phase="prepare")
    except KeyboardInterrupt:
        _abort(fleet, cfgs, created, "interrupted")
        reporter.error(
            "interrupted during prepare: nothing went live; the unactivated"
            " release was removed and our locks released"
        )
        raise
    outcome.uploads.update(uploads)
    if failures:
        _abort(fleet, cfgs, created, "another host failed" if uploads else "failed")
        raise _fail("prepare", failures, len(cfgs))
    return created


def _once(fleet: Fleet, cfgs: dict[str, Config], created: set[str]) -> None:
    """before_switch's `once` commands (migrations), on the first host, after the barrier."""
    primary = next(n for n, c in cfgs.items() if c.primary)
    if not hook.script(cfgs[primary], "before_switch", once=True):
        return
    _, failures = fleet.each(
        lambda r: build.before_switch_once(r, cfgs[r.name]), [primary], phase="once"
    )
    if failures:
        _abort(fleet, cfgs, created, "a once hook failed")
        raise _fail("before_switch (once)", failures, len(cfgs))


def _go_live(
    fleet: Fleet,
    cfgs: dict[str, Config],
    opts: Options,
    reporter: Reporter,
    outcome: Outcome,
    name: str,
) -> bool:
    """Switch batch by batch, health checks between; on a failure, settle it and raise.
    Returns whether an interrupt came during it (held until every host had finished)."""
    triggers: dict[str, switch.Trigger] = {}

    def go_live(r: Remote) -> None:
        cfg = cfgs[r.name]
        done = switch.switch(
            r, cfg, name, [release.log_line(cfg, name, LIVE)], trigger=triggers.get(r.name)
        )
        if done.at is not None:
            outcome.switched_at[r.name] = done.at
        verb = "would go live" if opts.dry_run else "live"
        reporter.host(r.name, f"{verb}: current -> releases/{name}")
        for text in done.warnings:
            reporter.warn(r.name, text)

    batches = plan_batches(list(cfgs), opts.batch, opts.canary)
    went_live: list[str] = []
    failures: dict[str, BaseException] = {}
    with deferred_interrupts() as interrupted:
        for i, batch in enumerate(batches):
            triggers = {} if opts.dry_run else arm(batch)
            _, failures = fleet.each(go_live, batch, phase="go-live", wide=True)
            went_live += [n for n in batch if n not in failures]
            failed_at = "go-live"
            if not failures:
                _, failures = fleet.each(
                    lambda r: health.check(r, cfgs[r.name]), batch, phase="health", wide=True
                )
                failed_at = "health check"
            if failures:
                failure = plan.GoLiveFailure(
                    failed_at,
                    tuple(failures),
                    tuple(went_live),
                    tuple(n for b in batches[i + 1 :] for n in b),
                    opts.allow_partial,
                )
                stuck = _recover(fleet, cfgs, failure, name, outcome)
                break
            if len(batches) > 1:
                what = "canary" if opts.canary and i == 0 else f"batch {i + 1}/{len(batches)}"
                reporter.line(f"{what} live: {', '.join(batch)}")
    if failures:
        if interrupted:
            reporter.error("interrupted during go-live: finished it first")
        _settle(fleet, cfgs, reporter, outcome, failures, failure, stuck, name)
    return bool(interrupted)


def _recover(
    fleet: Fleet, cfgs: dict[str, Config], failure: plan.GoLiveFailure, name: str, outcome: Outcome
) -> list[str]:
    """Switch back the hosts that went live; remove the release where it never went live.
    Returns the hosts that could not be switched back."""
    stuck: list[str] = []
    back = list(plan.switch_back(failure))
    if back:
        # Never leave the stage split: the hosts that went live go back.
        why = (
            "health check failed"
            if failure.failed_at == "health check"
            else "another host failed at go-live"
        )
        stuck = _switch_back(fleet, cfgs, back, name, why, outcome)
    if failure.not_reached:
        _abort(
            fleet,
            {n: cfgs[n] for n in failure.not_reached},
            set(failure.not_reached),
            f"{failure.failed_at} failed on another host",
        )
    return stuck


def _settle(
    fleet: Fleet,
    cfgs: dict[str, Config],
    reporter: Reporter,
    outcome: Outcome,
    failures: dict[str, BaseException],
    failure: plan.GoLiveFailure,
    stuck: list[str],
    name: str,
) -> None:
    """Release the locks still held, say what each host ended on, and raise."""
    settled = plan.settle(failure, stuck, name)
    outcome.result.update(settled.results)
    for n in settled.live:
        outcome.result.setdefault(n, "live")
    _best_effort(fleet, lambda r: lock.unlock(r, cfgs[r.name]), list(settled.unlock))
    _summary(reporter, fleet, outcome)
    raise _fail(
        failure.failed_at, failures, len(cfgs), note=settled.note, exit_code=settled.exit_code
    )


def _finish(
    fleet: Fleet,
    cfgs: dict[str, Config],
    states: dict[str, HostState],
    opts: Options,
    reporter: Reporter,
    hooks: Hooks,
    outcome: Outcome,
    name: str,
    interrupted: bool,
) -> None:
    """The release is live: after-switch hooks, cleanup and unlock on every host."""

    def finish(r: Remote) -> None:
        cfg = cfgs[r.name]
        try:
            build.after_switch(r, cfg, hooks)
        except AtomicDeployError as exc:
            exc.live = True
            _best_effort(fleet, lambda r: lock.unlock(r, cfg), [r.name])
            raise
        _cleanup(r, cfg, states[r.name], opts, reporter, outcome)
        try:
            build.after_cleanup(r, cfg, hooks)
        except AtomicDeployError as exc:
            exc.live = True
            raise

    # The release is live: an interrupt now waits for after-switch hooks, cleanup and
    # unlock on every host (command_timeout bounds them), so no lock is left behind.
    with deferred_interrupts() as late:
        _, failures = fleet.each(finish, phase="finish", wide=True)
    hook_failures = {
        n: e
        for n, e in failures.items()
        if isinstance(e, AtomicDeployError) and (e.step or "").startswith("hook")
    }
    for n, exc in failures.items():
        if n not in hook_failures:
            reporter.warn(n, f"after go-live: {exc}")
    outcome.result.update(plan.finish_results(list(cfgs), list(hook_failures), opts.dry_run))
    _summary(reporter, fleet, outcome)
    if interrupted or late:
        when = "during go-live" if interrupted else "after go-live"
        reporter.error(
            f"interrupted {when}: release {name} is live on every host and our locks are released"
        )
        raise KeyboardInterrupt
    if hook_failures:
        raise _fail(
            "after go-live",
            hook_failures,
            len(cfgs),
            note=f"; release {name} is live on every host",
            exit_code=EXIT_LIVE_HOOK_FAILED,
        )


def _cleanup(
    r: Remote, cfg: Config, state: HostState, opts: Options, reporter: Reporter, outcome: Outcome
) -> None:
    """Cleanup and unlock; trouble is a warning, since the release is live."""
    victims, odd = cleanup.victims_after_go_live(state, cfg)
    _warn_left_alone(reporter, r.name, odd)
    try:
        cleanup.cleanup_and_unlock(r, cfg, victims, state)
    except AtomicDeployError as exc:
        reporter.warn(r.name, f"cleanup failed (the deploy is live): {exc.message}")
        return
    outcome.removed[r.name] = victims
    if victims:
        verb = "would remove" if opts.dry_run else "removed"
        reporter.host(r.name, f"cleanup: {verb} {', '.join(victims)}")


def _already_live(
    fleet: Fleet,
    cfgs: dict[str, Config],
    states: dict[str, HostState],
    opts: Options,
    outcome: Outcome,
) -> bool:
    """Deployer's check_remote: this revision already live everywhere means nothing to do."""
    revision = opts.revision
    if not revision or opts.force:
        return False
    for state in states.values():
        live = state.get(state.current) if state.current else None
        if live is None or live.revision != revision:
            return False
    _best_effort(fleet, lambda r: lock.unlock(r, cfgs[r.name]), cfgs)
    for n, state in states.items():
        outcome.release[n] = state.current or "-"
        outcome.result[n] = "already live"
    outcome.unchanged = True
    fleet.reporter.line(
        f"revision {revision[:12]} is already live on every host of"
        f" {opts.stage}: nothing to do (--force deploys it again)"
    )
    return True


def _failure_hooks(
    fleet: Fleet, cfgs: dict[str, Config], hooks: Hooks, error: AtomicDeployError
) -> None:
    """`on_failure` on every host we can reach; their own failures are only warnings."""
    if not hooks.at(FAILURE) and not any(c.host.hooks.get(FAILURE) for c in cfgs.values()):
        return
    _best_effort(fleet, lambda r: hook.on_failure(r, cfgs[r.name], hooks, error), cfgs)


def _abort(fleet: Fleet, cfgs: dict[str, Config], created: set[str], why: str) -> None:
    """Nothing went live: remove the unactivated release and release every lock we took."""

    def undo(r: Remote) -> None:
        cfg = cfgs[r.name]
        if r.name in created:
            release.remove(r, cfg, FAILED, why)
        lock.unlock(r, cfg)

    _best_effort(fleet, undo, cfgs)


def _warn_left_alone(reporter: Reporter, host: str, names: Sequence[str]) -> None:
    for name in names:
        reporter.warn(
            host, f"cleanup: left {name!r} alone: not a release directory name atomicdeploy makes"
        )


def _notifier(
    action: str,
    hosts: Sequence[HostConfig],
    run: RunInfo,
    opts: Options,
    reporter: Reporter,
    outcome: Outcome,
) -> Callable[..., None]:
    """`tell(kind, error=None)`: the run's webhooks (none in a dry run) hear of it, with the
    release `outcome` names by then; a deploy that found its revision live is no news."""
    urls = [] if opts.dry_run else list(dict.fromkeys(u for h in hosts for u in h.webhook))
    notifier = notify.Notifier(
        urls,
        stage=run.stage,
        revision=run.revision,
        user=run.user,
        hosts=tuple(h.name for h in hosts),
        action=action,
        warn=lambda t: reporter.warn("notify", t),
        mask=reporter.mask,
    )

    def tell(kind: str, error: BaseException | None = None) -> None:
        if not (kind == "success" and outcome.unchanged):
            # A rollback's hosts may go back to different releases: name each once.
            notifier(kind, ", ".join(dict.fromkeys(outcome.release.values())), error)
        if kind != "start":
            notifier.close()  # the last word: wait (bounded) until it is out

    return tell


def rollback(
    hosts: Sequence[HostConfig],
    opts: Options,
    reporter: Reporter,
    *,
    fabric_config: FabricConfig | None = None,
) -> Outcome:
    """Switch every host back to its previous complete release (or to `opts.release`),
    with the same webhook notifications as a deploy."""
    run = run_info(opts.stage)
    with dryrun.hosts(hosts, opts.dry_run) as hosts:
        fleet = Fleet(
            hosts, reporter, parallel=opts.parallel, fabric_config=fabric_config, dry=opts.dry_run
        )
        outcome = Outcome()
        tell = _notifier(
            "switch" if opts.switch_only else "rollback", hosts, run, opts, reporter, outcome
        )
        try:
            tell("start")
            try:
                _rollback(fleet, hosts, run, opts, reporter, outcome)
            except (AtomicDeployError, KeyboardInterrupt) as exc:
                tell("failure", exc)
                raise
            tell("success")
            return outcome
        finally:
            if opts.dry_run:
                outcome.planned = dryrun.print_plan(reporter, fleet)
            fleet.close()


def _rollback(
    fleet: Fleet,
    hosts: Sequence[HostConfig],
    run: RunInfo,
    opts: Options,
    reporter: Reporter,
    outcome: Outcome,
) -> Outcome:
    cfgs = _rollback_configs(fleet, hosts, run, opts, outcome)

    def go_back(r: Remote) -> None:
        cfg = cfgs[r.name]
        if cfg.release == cfg.previous:
            lock.unlock(r, cfg)
            reporter.host(r.name, f"already live: releases/{cfg.release}")
            return
        lines = [
            release.log_line(cfg, cfg.release, LIVE, "switch" if opts.switch_only else "rollback")
        ]
        if cfg.previous and not opts.switch_only:
            note = f"rolled back to {cfg.release}"
            lines.insert(0, release.log_line(cfg, cfg.previous, ROLLED_BACK, note))
        done = switch.switch(r, cfg, cfg.release, lines, unlock=True, trigger=triggers.get(r.name))
        if done.at is not None:
            outcome.switched_at[r.name] = done.at
        for text in done.warnings:
            reporter.warn(r.name, text)
        verb = "switched" if opts.switch_only else "rolled back"
        reporter.host(r.name, f"{verb}: current -> releases/{cfg.release} (was {cfg.previous})")
        health.check(r, cfg)

    moving = [n for n, c in cfgs.items() if c.release != c.previous]
    triggers = {} if opts.dry_run else arm(moving)
    with deferred_interrupts() as interrupted:
        _, failures = fleet.each(go_back, phase="go-live", wide=True)
    for n in cfgs:
        outcome.result[n] = "failed" if n in failures else f"live on {cfgs[n].release}"
    _summary(reporter, fleet, outcome)
    if interrupted:
        reporter.error("interrupted during go-live: finished it first")
        raise KeyboardInterrupt
    if failures:
        live = [n for n in cfgs if n not in failures]
        raise _fail(
            "switch" if opts.switch_only else "rollback",
            failures,
            len(cfgs),
            exit_code=EXIT_PARTIAL if live else 1,
        )
    return outcome


def _rollback_configs(
    fleet: Fleet, hosts: Sequence[HostConfig], run: RunInfo, opts: Options, outcome: Outcome
) -> dict[str, Config]:
    """Lock and read every host, and choose each one's target; if any host has none, unlock
    all and stop before anything moves."""
    cfgs = {h.name: Config(host=h, run=run) for h in hosts}
    states = _lock_and_read(fleet, cfgs, upload=False)
    problems: dict[str, BaseException] = {}
    for n, state in states.items():
        try:
            target = _rollback_target(state, opts.release)
        except AtomicDeployError as exc:
            exc.host, exc.step = n, "switch" if opts.switch_only else "rollback"
            problems[n] = exc
            continue
        cfgs[n] = replace(cfgs[n], release=target, previous=state.current)
        outcome.release[n], outcome.previous[n] = target, state.current
    if problems:
        _best_effort(fleet, lambda r: lock.unlock(r, cfgs[r.name]), cfgs)
        raise _fail("switch" if opts.switch_only else "rollback", problems, len(cfgs))
    return cfgs


def _rollback_target(state: HostState, wanted: str | None) -> str:
    if wanted:
        info = state.get(wanted)
        if info is None:
            raise AtomicDeployError(f"release {wanted} does not exist on this host")
        if info.state not in (*GOOD, ROLLED_BACK):
            raise AtomicDeployError(f"release {wanted} is {info.state}, not complete: refusing")
        return wanted
    target = rollback_target(list(state.releases), state.current)
    if target is None:
        raise AtomicDeployError(f"no complete release older than {state.current} to roll back to")
    return target


def _on_each_host(
    step: Callable[[Remote, Config], T],
    hosts: Sequence[HostConfig],
    reporter: Reporter,
    stage: str,
    fabric_config: FabricConfig | None,
):
    """One step on every host, without the lock: for the read-only and repair tasks."""
    run = run_info(stage)
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
