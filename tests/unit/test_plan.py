"""plan: the go-live failure matrix as a decision table (no hosts, no network)."""

from __future__ import annotations

import pytest

from atomicdeploy import plan
from atomicdeploy.errors import EXIT_FAILED, EXIT_PARTIAL

# failed_at, failed, went_live, not_reached, allow_partial, stuck ->
#   switched back, unlocked, results (the rest of went_live: "live" unless the switch back
#   said more), note, exit code
CASES = [
    (
        "one host of one batch fails its switch: the others go back",
        ("go-live", ("w2",), ("w1", "w3"), (), False, ()),
        (
            ("w1", "w3"),
            ("w2",),
            {"w2": "failed at go-live"},
            "; reverted w1, w3 to their previous release",
            EXIT_FAILED,
        ),
    ),
    (
        "allow_partial keeps the hosts that went live",
        ("go-live", ("w2",), ("w1", "w3"), (), True, ()),
        ((), ("w2", "w1", "w3"), {"w2": "failed at go-live"}, "", EXIT_PARTIAL),
    ),
    (
        "a failed health check switches back even with allow_partial",
        ("health check", ("w1",), ("w1", "w2"), (), True, ()),
        (
            ("w1", "w2"),
            (),
            {"w1": "failed at health check"},
            "; reverted w1, w2 to their previous release",
            EXIT_FAILED,
        ),
    ),
    (
        "a host that cannot be switched back stays live: partial",
        ("go-live", ("w3",), ("w1", "w2"), (), False, ("w2",)),
        (
            ("w1", "w2"),
            ("w3", "w2"),
            {"w3": "failed at go-live"},
            "; reverted w1 to their previous release; w2 could not be switched back and stay on R",
            EXIT_PARTIAL,
        ),
    ),
    (
        "the canary fails: later batches are never switched",
        ("health check", ("w1",), ("w1",), ("w2", "w3"), False, ()),
        (
            ("w1",),
            (),
            {"w1": "failed at health check", "w2": "not switched", "w3": "not switched"},
            "; reverted w1 to their previous release",
            EXIT_FAILED,
        ),
    ),
    (
        "every host fails its switch: nothing to switch back",
        ("go-live", ("w1", "w2"), (), (), False, ()),
        ((), ("w1", "w2"), {"w1": "failed at go-live", "w2": "failed at go-live"}, "", EXIT_FAILED),
    ),
]


@pytest.mark.parametrize(("facts", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_go_live_failure_matrix(facts, expected):
    failed_at, failed, went_live, not_reached, allow_partial, stuck = facts
    back, unlock, results, note, code = expected
    failure = plan.GoLiveFailure(failed_at, failed, went_live, not_reached, allow_partial)
    assert plan.switch_back(failure) == back
    settled = plan.settle(failure, stuck, "R")
    assert settled.results == results
    assert settled.live == tuple(n for n in went_live if n not in failed)
    assert settled.unlock == unlock
    assert settled.note == note
    assert settled.exit_code == code


def test_finish_results_say_live_or_dry_run_and_which_hooks_failed():
    assert plan.finish_results(["w1", "w2"], ["w2"], dry_run=False) == {
        "w1": "live",
        "w2": "live, hook failed",
    }
    assert plan.finish_results(["w1"], [], dry_run=True) == {"w1": "dry run"}
