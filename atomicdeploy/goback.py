"""A rollback or switch in one pass per host: lock, read, choose, arm; then all go live at once.

Each host logs in, takes its lock (the stage's first host alone, before the others, as every
run does), reads its state, chooses its target and arms its switch, without waiting for the
slowest host between these steps. The one barrier is the go signal: it is sent when every host
is armed (or done), and only if every host was locked and has a target. Otherwise every armed
host is told `no`, renames nothing and releases its lock in the same script: nothing moves
anywhere. The same guarantees as running the phases one after the other (lock and read
everywhere, then switch everywhere), which costs the slowest host's round trips once more.

Used outside a dry run for 2 to WIDE hosts, the fleet the go signal can hold at once;
pipeline.py runs the phases one after the other otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from . import golive
from .config import Config
from .errors import AtomicDeployError
from .plan import rollback_to
from .releases import HostState
from .remote import Remote
from .run import FirstLock, Run, fail
from .runner import WIDE
from .steps import lock, setup, switch


def eligible(run: Run) -> bool:
    return not run.opts.dry_run and 1 < len(run.cfgs) <= WIDE


@dataclass
class _Pass:
    """The signals the hosts of one pass share. Host threads only set events; the decision
    to go (or not) is taken once, by the thread that waits for every host to be armed."""

    names: list[str]
    trouble: threading.Event = field(default_factory=threading.Event)
    fire: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    triggers: dict[str, switch.Trigger] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.triggers = {
            n: switch.Trigger(fire=self.fire, armed=threading.Event(), abort=self.abort)
            for n in self.names
        }

    def decide(self, interrupted: list[int]) -> None:
        """Once every host is armed or done: go, unless one failed or an interrupt came."""
        for trigger in self.triggers.values():
            trigger.armed.wait()
        if self.trouble.is_set() or interrupted:
            self.abort.set()
        self.fire.set()


def rollback(run: Run) -> None:
    """Every host to the release `rollback_to` chooses for it (see the module's docstring)."""
    p = _Pass(run.names)
    with golive.deferred_interrupts() as interrupted:
        threading.Thread(
            target=p.decide, args=(interrupted,), name="atomicdeploy-decide", daemon=True
        ).start()
        done, failures = run.first_then_the_rest(lambda r, gate: _one(run, p, r, gate))
    if not p.fire.is_set():
        # A host's pass never began (its connection could not be made): nothing was
        # fired, so nothing moved; let the decision be taken, and be `no`.
        p.trouble.set()
        for trigger in p.triggers.values():
            trigger.armed.set()
        p.fire.wait()
    if p.abort.is_set():
        _stopped(run, failures, bool(interrupted))
    at: dict[str, float | None] = {}
    for n, (cfg, when) in ((n, v) for n, v in done.items() if v is not None):
        run.cfgs[n] = cfg
        run.outcome.release[n], run.outcome.previous[n] = cfg.release, cfg.previous
        at[n] = when
    golive.settle_back(run, at, failures, bool(interrupted))


def _one(run: Run, p: _Pass, r: Remote, gate: FirstLock) -> tuple[Config, float | None] | None:
    """One host's pass; None if it never got its lock because the first host was not ours,
    or if it was told `no`."""
    trigger = p.triggers[r.name]
    try:
        with run.fleet.timing(r.name, "lock"):
            state = gate.lock(r, lambda r: setup.begin(r, run.cfgs[r.name], upload=False))
        if state is None:
            return None
        return _arm_and_go(run, p, r, state, trigger)
    except BaseException:
        p.trouble.set()
        raise
    finally:
        trigger.armed.set()


def choose(run: Run, name: str, state: HostState) -> str:
    """The host's target (plan.rollback_to); its error names the host and the action."""
    try:
        return rollback_to(state, run.opts.release)
    except AtomicDeployError as exc:
        exc.host, exc.step = name, run.opts.action
        raise


def _arm_and_go(
    run: Run, p: _Pass, r: Remote, state: HostState, trigger: switch.Trigger
) -> tuple[Config, float | None] | None:
    cfg = run.cfgs[r.name]
    try:
        target = choose(run, r.name, state)
    except AtomicDeployError:
        lock.unlock(r, cfg)
        raise
    cfg = replace(cfg, release=target, previous=state.current)
    with run.fleet.timing(r.name, "go-live"):
        if target == state.current:
            trigger.armed.set()
            p.fire.wait()  # ours until the fleet has decided
            if p.abort.is_set():
                lock.unlock(r, cfg)
                return None
            golive.already_live(run, r, cfg)
            return cfg, None
        try:
            return cfg, golive.back(run, r, cfg, trigger)
        except switch.Cancelled:
            return None


def _stopped(run: Run, failures: dict[str, BaseException], interrupted: bool) -> None:
    """Nothing moved: every lock taken was released by its own host's script. Raise."""
    if interrupted:
        run.reporter.error("interrupted while locking: nothing changed; our locks released")
        raise KeyboardInterrupt
    action = run.opts.action
    choosing = {n: e for n, e in failures.items() if getattr(e, "step", None) == action}
    if choosing and len(choosing) == len(failures):
        raise fail(action, choosing, len(run.cfgs))
    raise fail("lock", failures, len(run.cfgs))
