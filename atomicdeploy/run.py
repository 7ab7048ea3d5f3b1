"""One run on a fleet (a deploy, a rollback or a switch): what every kind of run shares.

A `Run` holds the hosts' connections, their configs, the options and the outcome. Its
phases are short methods that send one step to every host and collect what each host's
thread returns; only the run's own thread writes its configs and outcome. The deploy's
phases are in deploying.py, the go-live of every kind of run in golive.py, and the entry
points that build a run in pipeline.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from . import notify
from .config import Config, RunInfo
from .errors import AtomicDeployError, FleetError
from .hooks import FAILURE, Hooks
from .inventory import HostConfig
from .plan import Options, Outcome
from .releases import FAILED, HostState
from .remote import Remote
from .report import Reporter
from .runner import Fleet
from .steps import hook, lock, release, setup

T = TypeVar("T")
PHASES = ("lock", "prepare", "once", "go-live", "health", "revert", "finish")


def fail(
    phase: str, failures: dict[str, BaseException], total: int, note: str = "", **kw
) -> FleetError:
    """The one error a phase raises for every host that failed it."""
    names = ", ".join(failures)
    return FleetError(
        f"{phase} failed on {len(failures)}/{total} host(s): {names}{note}", failures, **kw
    )


class FirstLock:
    """The stage's first host is locked alone, before the others: of two runs started at
    the same moment, the one that gets it gets every host, and the other stops there.
    (Locking all hosts at once, each could win some hosts and both would fail.) The others
    log in meanwhile and each takes its lock as soon as the first host is ours; none does
    if it is not. A host that could not be reached is not tried twice: a dead host costs
    one connect_timeout, not two."""

    def __init__(self, first: str) -> None:
        self.first = first
        self._done = threading.Event()
        self._ours = threading.Event()

    @property
    def ours(self) -> bool:
        return self._ours.is_set()

    def lock(self, r: Remote, begin: Callable[[Remote], T]) -> T | None:
        """`begin` (setup, lock, state, and what follows in the same script if anything
        does) on `r` in its turn; None if it was not to begin. A `begin` that goes on after
        its lock calls `won` once the lock is taken."""
        if r.name != self.first:
            r.login("setup")
            self._done.wait()
            return begin(r) if self.ours else None
        try:
            done = begin(r)
            self._ours.set()
            return done
        finally:
            self._done.set()

    def won(self, name: str) -> None:
        """Host `name` holds its lock now: if it is the first host, the others' turn."""
        if name == self.first:
            self._ours.set()
            self._done.set()

    def release(self) -> None:
        """The first host's turn is over, whatever happened to it."""
        self._done.set()


class Run:
    """The fleet, the configs and the outcome of one run, and the phases every run has."""

    def __init__(
        self,
        fleet: Fleet,
        cfgs: dict[str, Config],
        opts: Options,
        reporter: Reporter,
        hooks: Hooks | None = None,
    ) -> None:
        self.fleet, self.cfgs, self.opts, self.reporter = fleet, cfgs, opts, reporter
        self.hooks = hooks if hooks is not None else Hooks()
        self.outcome = Outcome()

    @property
    def names(self) -> list[str]:
        return list(self.cfgs)

    def lock_and_read(self, *, upload: bool) -> dict[str, HostState]:
        """setup + lock + state on every host, the first host first (see FirstLock); if any
        host fails, release the locks we took."""
        names = self.names

        def begin(r: Remote) -> HostState:
            return setup.begin(r, self.cfgs[r.name], upload=upload)

        try:
            states, failures = self.first_then_the_rest(
                lambda r, gate: gate.lock(r, begin), phase="lock"
            )
        except KeyboardInterrupt:
            # Which hosts we locked is not known here: release ours everywhere (the token
            # makes that safe: someone else's lock is never touched).
            self.unlock(names)
            self.reporter.error("interrupted while locking: nothing changed; our locks released")
            raise
        if failures:
            self.unlock(states)
            raise fail("lock", failures, len(names))
        return states

    def first_then_the_rest(
        self, fn: Callable[[Remote, FirstLock], T | None], *, phase: str = ""
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        """`fn` on every host at once, where `fn` takes its lock through the `FirstLock`
        it is given. If the first host's lock is not ours, the others never took theirs:
        the first host's failure alone is returned. Hosts whose `fn` returned None are left
        out of the results."""
        names = self.names
        gate = FirstLock(names[0])
        with ThreadPoolExecutor(1, thread_name_prefix="atomicdeploy-rest") as pool:
            others = pool.submit(
                self.fleet.each, lambda r: fn(r, gate), names[1:], phase=phase, wide=True
            )
            try:
                done, failures = self.fleet.each(
                    lambda r: fn(r, gate), names[:1], phase=phase, wide=True
                )
            finally:
                gate.release()  # even if the first host's `fn` never ran
            rest, refused = others.result()
        if not gate.ours:
            return {}, failures
        done.update(rest)
        merged = failures | refused
        found = {n: v for n, v in done.items() if v is not None}
        return found, {n: merged[n] for n in names if n in merged}

    def best_effort(self, fn: Callable[[Remote], object], names: Iterable[str]) -> None:
        """Clean-up after a failure: each host's own failure is only a warning."""
        _, failures = self.fleet.each(fn, names)
        for name, exc in failures.items():
            self.reporter.warn(name, f"clean-up after failure: {exc}")

    def unlock(self, names: Iterable[str]) -> None:
        self.best_effort(lambda r: lock.unlock(r, self.cfgs[r.name]), list(names))

    def abort(self, names: Iterable[str], created: Iterable[str], why: str) -> None:
        """Nothing went live on `names`: remove the unactivated release where one was
        started (`created`) and release our lock."""
        made = set(created)

        def undo(r: Remote) -> None:
            cfg = self.cfgs[r.name]
            if r.name in made:
                release.remove(r, cfg, FAILED, why)
            lock.unlock(r, cfg)

        self.best_effort(undo, list(names))

    def failure_hooks(self, error: AtomicDeployError) -> None:
        """`on_failure` on every host we can reach; their own failures are only warnings."""
        configs = self.cfgs.values()
        if not self.hooks.at(FAILURE) and not any(c.host.hooks.get(FAILURE) for c in configs):
            return
        self.best_effort(
            lambda r: hook.on_failure(r, self.cfgs[r.name], self.hooks, error), self.names
        )

    def summary(self) -> None:
        """One table at the end: host, release, result, seconds per phase; then the skew."""
        self.reporter.end_progress()
        timings = self.outcome.timings = self.fleet.timings
        phases = [p for p in PHASES if any(p in t for t in timings.values())]
        rows = []
        for host in self.fleet.names:
            t = timings.get(host, {})
            spent = [f"{t[p]:.2f}" if p in t else "-" for p in phases]
            rows.append([host, *self._release_and_result(host), *spent])
        self.reporter.line("")
        headers = ["host", "release", "result", *[f"{p} s" for p in phases]]
        self.reporter.table(headers, rows, indent="")
        switched = self.outcome.switched_at
        if self.outcome.skew is not None and len(switched) > 1:
            self.reporter.line(
                f"switch skew: {self.outcome.skew * 1000:.0f} ms between the first and the"
                f" last host's switch ({len(switched)} hosts)"
            )

    def _release_and_result(self, host: str) -> tuple[str, str]:
        return self.outcome.release.get(host, "-"), self.outcome.result.get(host, "-")

    def warn_left_alone(self, host: str, names: Sequence[str]) -> None:
        for name in names:
            self.reporter.warn(
                host,
                f"cleanup: left {name!r} alone: not a release directory name atomicdeploy makes",
            )


def notifier(
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
    sender = notify.Notifier(
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
            sender(kind, ", ".join(dict.fromkeys(outcome.release.values())), error)
        if kind != "start":
            sender.close()  # the last word: wait (bounded) until it is out

    return tell
