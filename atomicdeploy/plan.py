"""Pure decisions of a deploy's go-live: what to do when some hosts failed, and what to say.

No I/O: the pipeline runs the phases and hands the facts here; these functions answer with
the actions (which hosts go back, which are unlocked) and the words (each host's result, the
note, the exit code). Tested as a decision table in tests/unit/test_plan.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import EXIT_FAILED, EXIT_PARTIAL


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
