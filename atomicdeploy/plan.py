"""Pure decisions of a run: its options and outcome, the go-live batches, the rollback
target, whether there is anything to deploy, and what to do when some hosts failed.

No I/O: the run (run.py) does the phases and hands the facts here; these functions answer
with the actions (which hosts go back, which are unlocked) and the words (each host's result,
the note, the exit code). Tested as a decision table in tests/unit/test_plan.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import EXIT_FAILED, EXIT_PARTIAL, AtomicDeployError, ConfigError
from .inventory import HostConfig
from .releases import GOOD, ROLLED_BACK, HostState, rollback_target


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

    @property
    def action(self) -> str:
        """What a rollback-shaped run is called in messages, logs and webhooks."""
        return "switch" if self.switch_only else "rollback"


@dataclass
class Outcome:
    """What happened on each host, for the summary and for tests. Filled by the run's
    main thread from the values its host threads return."""

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


def plan_batches(names: list[str], batch: str | None, canary: int = 0) -> list[list[str]]:
    """Split the stage into go-live batches: an optional canary batch, then `batch`-sized
    ones ("3" hosts or "25%" of the stage), else everything at once."""
    if canary < 0:
        raise ConfigError(f"--canary must be a positive number of hosts, not {canary}")
    first, rest = (names[:canary], names[canary:]) if canary else ([], names)
    size = _batch_size(batch, len(names)) if batch else len(rest) or 1
    batches = [first] if first else []
    batches += [rest[i : i + size] for i in range(0, len(rest), size)]
    return [b for b in batches if b]


def _batch_size(batch: str, hosts: int) -> int:
    text = str(batch).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.ceil(hosts * pct / 100))
        size = int(text)
        if size < 1:
            raise ValueError
        return size
    except ValueError:
        raise ConfigError(
            f"--batch must be a number of hosts or a percentage, not {batch!r}"
        ) from None


def already_live(states: Mapping[str, HostState], revision: str, force: bool) -> bool:
    """Deployer's check_remote: this revision already live everywhere means nothing to do."""
    if not revision or force:
        return False
    for state in states.values():
        live = state.get(state.current) if state.current else None
        if live is None or live.revision != revision:
            return False
    return True


def rollback_to(state: HostState, wanted: str | None) -> str:
    """The release a rollback (or switch) takes this host to: `wanted` if it is complete,
    else the newest complete release older than the live one."""
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


@dataclass(frozen=True)
class GoLiveFailure:
    """What happened in a go-live that did not reach every host."""

    failed_at: str  # "go-live" or "health check"
    failed: tuple[str, ...]  # the hosts whose switch or health check failed
    went_live: tuple[str, ...]  # switched (batches before, and the failed batch's others)
    not_reached: tuple[str, ...]  # later batches: never switched
    allow_partial: bool = False


def switch_back(f: GoLiveFailure) -> tuple[str, ...]:
    """The hosts to switch back to their previous release: never leave the stage split,
    unless the user allowed a partial go-live (which keeps a go-live failure only: a failed
    health check always switches back)."""
    keep = f.allow_partial and f.failed_at == "go-live"
    return () if keep else f.went_live


@dataclass(frozen=True)
class Settlement:
    """What to do and say once the switch back (if any) is done."""

    results: dict[str, str]  # host -> result text for the summary table
    # Hosts that went live: "live" unless the switch back said more ("reverted to R1").
    live: tuple[str, ...]
    unlock: tuple[str, ...]  # hosts whose lock we still hold
    note: str  # appended to the failure line
    exit_code: int


def settle(f: GoLiveFailure, stuck: Sequence[str], release: str) -> Settlement:
    """`stuck`: hosts that went live and could not be switched back."""
    reverted = bool(switch_back(f))
    results = {n: f"failed at {f.failed_at}" for n in f.failed}
    results.update({n: "not switched" for n in f.not_reached})
    # Hosts switched back were unlocked by their switch back; a failed go-live keeps its lock.
    failed_locked = list(f.failed) if f.failed_at == "go-live" else []
    unlock = (*failed_locked, *(stuck if reverted else f.went_live))
    back = [n for n in f.went_live if n not in stuck]
    note = f"; reverted {', '.join(back)} to their previous release" if reverted and back else ""
    if stuck:
        note += f"; {', '.join(stuck)} could not be switched back and stay on {release}"
    partial = (bool(f.went_live) and not reverted) or bool(stuck)
    live = tuple(n for n in f.went_live if n not in f.failed)
    return Settlement(results, live, unlock, note, EXIT_PARTIAL if partial else EXIT_FAILED)


def finish_results(
    hosts: Sequence[str], hook_failed: Sequence[str], dry_run: bool
) -> dict[str, str]:
    """Each host's result once the release is live everywhere."""
    live = "dry run" if dry_run else "live"
    return {n: live + (", hook failed" if n in hook_failed else "") for n in hosts}


def _names(option: str | None) -> list[str]:
    return [n.strip() for n in (option or "").split(",") if n.strip()]


def select(
    hosts: Sequence[HostConfig], stage: str, names: str | None, roles: str | None
) -> tuple[HostConfig, ...]:
    """The stage's hosts that `--hosts` and `--roles` pick (both given: a host matches both).

    Checked before any host is contacted: an unknown host or role, or a selection that
    matches nothing, is one line naming the valid ones."""
    wanted, roles_wanted = _names(names), _names(roles)
    known = [h.name for h in hosts]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(
            f"--hosts: {', '.join(unknown)} not in stage {stage} (hosts: {', '.join(known)})"
        )
    have = list(dict.fromkeys(r for h in hosts for r in h.roles))
    unknown = [r for r in roles_wanted if r not in have]
    if unknown:
        raise ConfigError(
            f"--roles: no host of stage {stage} has the role {', '.join(unknown)}"
            f" (roles: {', '.join(have) or 'none'})"
        )
    chosen = tuple(
        h
        for h in hosts
        if (not wanted or h.name in wanted)
        and (not roles_wanted or set(h.roles) & set(roles_wanted))
    )
    if not chosen:
        listed = ", ".join(f"{h.name} [{' '.join(h.roles)}]" for h in hosts)
        raise ConfigError(
            f"--hosts {names} --roles {roles}: no host of stage {stage} matches both"
            f" (hosts: {listed})"
        )
    return chosen


def split_line(live: Mapping[str, str | None], ran: Sequence[str]) -> str:
    """Where each host of the stage is after a run on some of them:
    "web1 on R2; web2, worker1 still on R1" (hosts in the run first)."""
    groups: dict[tuple[bool, str], list[str]] = {}
    for host, release in live.items():
        groups.setdefault((host in ran, release or "no release"), []).append(host)
    ordered = sorted(groups.items(), key=lambda item: not item[0][0])
    return "; ".join(
        f"{', '.join(names)} {'on' if in_run else 'still on'} {release}"
        for (in_run, release), names in ordered
    )
