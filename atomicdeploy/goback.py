"""A rollback or switch in one pass per host: lock, read, choose, arm; then all go live at once.

Each host logs in and runs one script in two halves over one channel: setup, lock and
state read (the stage's first host alone, before the others, as every run does); then the
second half, sent back as soon as that host's state is read: its armed switch to the
target chosen from the state, which waits for the go signal and releases the lock. No
host waits for the slowest between these steps. The one barrier is the go signal: it is
sent when every host is armed (or done), and only if every host was locked and has a
target. Otherwise every armed host is told `no`, renames nothing and releases its lock in
the same script: nothing moves anywhere. The same guarantees as running the phases one
after the other (lock and read everywhere, then switch everywhere), which costs the
slowest host's round trips once more, and a second channel and shell per host.

Used outside a dry run for 2 to WIDE hosts, the fleet the go signal can hold at once;
pipeline.py runs the phases one after the other otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from . import golive, shell
from .config import Config
from .errors import AtomicDeployError, RemoteError
from .plan import rollback_to
from .releases import HostState, parse_state
from .remote import Remote
from .run import FirstLock, Run, fail
from .runner import WIDE
from .steps import setup, switch


def eligible(run: Run) -> bool:
    return not run.opts.dry_run and 1 < len(run.cfgs) <= WIDE


@dataclass
class _Pass:
    """The signals the hosts of one pass share. Host threads only set events; the decision
    to go (or not) is taken once, by the thread that waits for every host to be armed."""

    names: list[str]
    trouble: threading.Event = field(default_factory=threading.Event)
    fire: switch.Fire = field(default_factory=switch.Fire)
    triggers: dict[str, switch.Trigger] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.triggers = {
            n: switch.Trigger(fire=self.fire, armed=threading.Event()) for n in self.names
        }

    def decide(self, interrupted: list[int]) -> None:
        """Once every host is armed or done: go, unless one failed or an interrupt came."""
        for trigger in self.triggers.values():
            trigger.armed.wait()
        if self.trouble.is_set() or interrupted:
            self.fire.abort.set()
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
    if p.fire.abort.is_set():
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
    host = _Host(run, r, gate)
    ok = False
    try:
        done = gate.lock(r, lambda r: host.go(trigger))
        ok = True
        return done
    except BaseException:
        p.trouble.set()
        raise
    finally:
        host.ended(ok)
        trigger.armed.set()


def choose(run: Run, name: str, state: HostState) -> str:
    """The host's target (plan.rollback_to); its error names the host and the action."""
    try:
        return rollback_to(state, run.opts.release)
    except AtomicDeployError as exc:
        exc.host, exc.step = name, run.opts.action
        raise


class _Host:
    """One host's pass as one script in two halves: setup, lock and state; then, sent back
    once the state is read, the armed switch to the target chosen from it (or the wait for
    the fleet's decision on a host already there, or the unlock when there is no target),
    which releases the lock. One login, one channel, one shell."""

    def __init__(self, run: Run, r: Remote, gate: FirstLock) -> None:
        self.run, self.r, self.gate = run, r, gate
        self.cfg = run.cfgs[r.name]
        self.error: Exception | None = None  # found while choosing: raised after the unlock
        self.start = run.fleet.started(r.name, "lock")  # the login and the wait count too
        self.went_on: float | None = None  # when the second half was sent

    def go(self, trigger: switch.Trigger) -> tuple[Config, float | None] | None:
        first = shell.then_next(setup.script(self.cfg, upload=False))
        try:
            out = switch.armed_run(self.r, first, trigger, self.reply)
        except switch.Cancelled:
            return None
        except RemoteError as exc:
            held = setup.lock_held(exc, self.cfg) if self.went_on is None else None
            if held is None:
                raise
            raise held from exc
        return self._after(out.partition(f"\n{shell.NEXT_MARKER}\n")[2])

    def reply(self, printed: str) -> str:
        """The second half, from the state the first half printed. Never raises (the
        script waits for it): an error is kept, the lock released, and `go` raises it."""
        fleet, name = self.run.fleet, self.r.name
        fleet.spent(name, "lock", self.start)
        self.went_on = fleet.started(name, "go-live")
        self.gate.won(name)
        try:
            return self._second_half(parse_state(printed, shell.STATE_MARKERS))
        except Exception as exc:
            self.error = exc
            return shell.unlock_own(self.cfg.layout, self.cfg.run.token)

    def _second_half(self, state: HostState) -> str:
        cfg, layout, token = self.cfg, self.cfg.layout, self.cfg.run.token
        target = choose(self.run, self.r.name, state)
        self.cfg = cfg = replace(cfg, release=target, previous=state.current)
        if target == state.current:  # ours until the fleet has decided
            return shell.then_unlock(shell.wait_for_go(), layout, token)
        lines = golive.back_lines(self.run, cfg)
        return switch.script(cfg, target, lines, unlock=True, armed=True)

    def ended(self, ok: bool) -> None:
        """The host's time in its phase so far counts (the live table and the summary)."""
        if self.went_on is None:
            self.run.fleet.spent(self.r.name, "lock", self.start, ok=ok)
        else:
            self.run.fleet.spent(self.r.name, "go-live", self.went_on, ok=ok)

    def _after(self, out: str) -> tuple[Config, float | None]:
        if self.error is not None:
            raise self.error
        cfg = self.cfg
        if cfg.release == cfg.previous:
            golive.say_already_live(self.run, self.r.name, cfg)  # its script released the lock
            return cfg, None
        expected = cfg.layout.current_target(cfg.release)
        done = switch.switched(out, expected, self.r.name)
        return cfg, golive.went_back(self.run, self.r, cfg, done)


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
