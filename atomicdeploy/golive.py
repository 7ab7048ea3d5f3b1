"""Go-live for every kind of run: the switch on every host at once, batch by batch, with
health checks; and when a host fails, the switch back that keeps the stage on one release.

Interrupts are held while a go-live runs, so it finishes (or is reverted) whole. The
decisions (who goes back, who is unlocked, the exit code) are plan.py's; this module sends
the switches and collects what each host's thread returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

from . import plan
from .config import Config
from .errors import EXIT_PARTIAL
from .releases import LIVE, ROLLED_BACK
from .remote import Remote
from .run import Run, fail
from .runner import WIDE
from .steps import health, lock, release, switch

ARM_TIMEOUT = 30.0  # seconds to wait for every host of a batch to be armed


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM during the block: a go-live is finished (or reverted) whole.

    Yields the list of signals that arrived; the caller finishes its work (unlock)
    and then raises KeyboardInterrupt. Only the main thread can install handlers.
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def hold(signum, frame):  # type: ignore[no-untyped-def]
        pending.append(signum)

    old = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


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
    fire = switch.Fire()
    triggers = {n: switch.Trigger(fire=fire, armed=threading.Event()) for n in names}

    def fire_when_armed() -> None:
        deadline = time.monotonic() + ARM_TIMEOUT
        for t in triggers.values():
            t.armed.wait(max(0.0, deadline - time.monotonic()))
        fire.set()

    threading.Thread(target=fire_when_armed, name="atomicdeploy-fire", daemon=True).start()
    return triggers


def _switch(
    run: Run, r: Remote, target: str, lines: list[str], cfg: Config | None = None, **kw
) -> float | None:
    """One host's switch; its warnings are said at once. Returns the host's clock right
    after the rename, which the run collects for the switch skew."""
    done = switch.switch(r, cfg or run.cfgs[r.name], target, lines, **kw)
    _said(run, r.name, done)
    return done.at


def _said(run: Run, name: str, done: switch.Switched) -> None:
    """What a host's switch printed for its report: its warnings, then its notes."""
    for text in done.warnings:
        run.reporter.warn(name, text)
    for text in done.notes:
        run.reporter.host(name, text)


def _switched(run: Run, times: dict[str, float | None]) -> None:
    run.outcome.switched_at.update({n: at for n, at in times.items() if at is not None})


def deploy(run: Run, name: str) -> bool:
    """Switch batch by batch, health checks between; on a failure, settle it and raise.
    Returns whether an interrupt came during it (held until every host had finished)."""
    batches = plan.plan_batches(run.names, run.opts.batch, run.opts.canary)
    with deferred_interrupts() as interrupted:
        went_live: list[str] = []
        for i, batch in enumerate(batches):
            failed_at, failures = _batch(run, batch, name)
            went_live += [n for n in batch if n not in failures or failed_at != "go-live"]
            if failures:
                later = tuple(n for b in batches[i + 1 :] for n in b)
                failure = plan.GoLiveFailure(
                    failed_at, tuple(failures), tuple(went_live), later, run.opts.allow_partial
                )
                stuck = _recover(run, failure, name)
                break
            if len(batches) > 1:
                what = "canary" if run.opts.canary and i == 0 else f"batch {i + 1}/{len(batches)}"
                run.reporter.line(f"{what} live: {', '.join(batch)}")
        else:
            return bool(interrupted)
    if interrupted:
        run.reporter.error("interrupted during go-live: finished it first")
    _settle(run, failures, failure, stuck, name)
    raise AssertionError("unreachable: _settle raises")


def _batch(run: Run, batch: list[str], name: str) -> tuple[str, dict[str, BaseException]]:
    """One batch goes live, then its health checks; returns where it failed, and who."""
    triggers = {} if run.opts.dry_run else arm(batch)
    verb = "would go live" if run.opts.dry_run else "live"

    def go_live(r: Remote) -> float | None:
        cfg = run.cfgs[r.name]
        lines = [release.log_line(cfg, name, LIVE)]
        done = switch.switch(r, cfg, name, lines, trigger=triggers.get(r.name))
        run.reporter.host(r.name, f"{verb}: current -> releases/{name}")
        _said(run, r.name, done)
        return done.at

    done, failures = run.fleet.each(go_live, batch, phase="go-live", wide=True)
    _switched(run, done)
    if failures:
        return "go-live", failures
    _, failures = run.fleet.each(
        lambda r: health.check(r, run.cfgs[r.name]), batch, phase="health", wide=True
    )
    return "health check", failures


def _recover(run: Run, failure: plan.GoLiveFailure, name: str) -> list[str]:
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
        stuck = _switch_back(run, back, name, why)
    if failure.not_reached:
        why = f"{failure.failed_at} failed on another host"
        run.abort(failure.not_reached, failure.not_reached, why)
    return stuck


def _switch_back(run: Run, names: list[str], name: str, why: str) -> list[str]:
    """Switch `names` back to the release each had before `name`, through the same steps.

    Returns the hosts that could not be switched back (they stay on `name`)."""

    def back(r: Remote) -> str:
        cfg = run.cfgs[r.name]
        if not cfg.previous:
            lock.unlock(r, cfg)
            run.reporter.warn(r.name, f"{why}; no earlier release to go back to")
            return "live (nothing to revert to)"
        lines = [
            release.log_line(cfg, name, ROLLED_BACK, why),
            release.log_line(cfg, cfg.previous, LIVE, "reverted"),
        ]
        _switch(run, r, cfg.previous, lines, unlock=True)
        run.reporter.host(r.name, f"reverted: current -> releases/{cfg.previous} ({why})")
        return f"reverted to {cfg.previous}"

    results, failures = run.fleet.each(back, names, phase="revert", wide=True)
    run.outcome.result.update(results)
    for n, exc in failures.items():
        run.outcome.result[n] = "live (revert failed)"
        run.reporter.warn(n, f"revert failed, this host stays on the new release: {exc}")
    return list(failures)


def _settle(
    run: Run,
    failures: dict[str, BaseException],
    failure: plan.GoLiveFailure,
    stuck: list[str],
    name: str,
) -> None:
    """Release the locks still held, say what each host ended on, and raise."""
    settled = plan.settle(failure, stuck, name)
    run.outcome.result.update(settled.results)
    for n in settled.live:
        run.outcome.result.setdefault(n, "live")
    run.unlock(settled.unlock)
    run.summary()
    raise fail(
        failure.failed_at,
        failures,
        len(run.cfgs),
        note=settled.note,
        exit_code=settled.exit_code,
    )


def go_back(run: Run) -> None:
    """A rollback's or switch's go-live: every host to the release its config names, in one
    batch, with health checks; the lock is released in the same script as the switch."""
    moving = [n for n, c in run.cfgs.items() if c.release != c.previous]
    triggers = {} if run.opts.dry_run else arm(moving)

    def one(r: Remote) -> float | None:
        cfg = run.cfgs[r.name]
        if cfg.release == cfg.previous:
            already_live(run, r, cfg)
            return None
        return back(run, r, cfg, triggers.get(r.name))

    with deferred_interrupts() as interrupted:
        done, failures = run.fleet.each(one, phase="go-live", wide=True)
    settle_back(run, done, failures, bool(interrupted))


def already_live(run: Run, r: Remote, cfg: Config) -> None:
    lock.unlock(r, cfg)
    say_already_live(run, r.name, cfg)


def say_already_live(run: Run, name: str, cfg: Config) -> None:
    """A host of a rollback or switch that was on its target: nothing moved there."""
    run.reporter.host(name, f"already live: releases/{cfg.release}")


def back(run: Run, r: Remote, cfg: Config, trigger: switch.Trigger | None) -> float | None:
    """One host of a rollback or switch to `cfg.release`, logged, its lock released in the
    same script; then its health check. Returns the host's clock at the rename."""
    lines = back_lines(run, cfg)
    done = switch.switch(r, cfg, cfg.release, lines, unlock=True, trigger=trigger)
    return went_back(run, r, cfg, done)


def back_lines(run: Run, cfg: Config) -> list[str]:
    """The log lines of a rollback or switch to `cfg.release` from `cfg.previous`."""
    lines = [release.log_line(cfg, cfg.release, LIVE, run.opts.action)]
    if cfg.previous and not run.opts.switch_only:
        note = f"rolled back to {cfg.release}"
        lines.insert(0, release.log_line(cfg, cfg.previous, ROLLED_BACK, note))
    return lines


def went_back(run: Run, r: Remote, cfg: Config, done: switch.Switched) -> float | None:
    """Say a host's switch back and its warnings, then check its health. Returns the
    host's clock at the rename."""
    verb = "switched" if run.opts.switch_only else "rolled back"
    run.reporter.host(r.name, f"{verb}: current -> releases/{cfg.release} (was {cfg.previous})")
    _said(run, r.name, done)
    health.check(r, cfg)
    return done.at


def settle_back(
    run: Run,
    done: dict[str, float | None],
    failures: dict[str, BaseException],
    interrupted: bool,
) -> None:
    """Say what each host of a rollback or switch ended on, and raise if one failed."""
    _switched(run, done)
    for n, cfg in run.cfgs.items():
        run.outcome.result[n] = "failed" if n in failures else f"live on {cfg.release}"
    run.summary()
    if interrupted:
        run.reporter.error("interrupted during go-live: finished it first")
        raise KeyboardInterrupt
    if failures:
        live = [n for n in run.cfgs if n not in failures]
        action = run.opts.action
        raise fail(action, failures, len(run.cfgs), exit_code=EXIT_PARTIAL if live else 1)
