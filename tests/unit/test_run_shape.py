"""The run's pure decisions, the dry-run Remote, and one inventory read per `fab` call.

No hosts: the decisions are tables, the dry-run Remote is given no connection it could
use, and the inventory test stops at bad input, before any host would be contacted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Program

import atomicdeploy.inventory as inventory_mod
from atomicdeploy import plan, tasks
from atomicdeploy.dryrun import DryRemote
from atomicdeploy.errors import AtomicDeployError
from atomicdeploy.inventory import HostConfig
from atomicdeploy.releases import COMPLETE, FAILED, LIVE, ROLLED_BACK, HostState, ReleaseInfo

R1, R2, R3 = "20261201T000000Z", "20261202T000000Z", "20261203T000000Z"


def host(current: str | None, *releases: tuple[str, str, str]) -> HostState:
    infos = tuple(
        ReleaseInfo(name, state, revision=rev, live=name == current)
        for name, state, rev in releases
    )
    return HostState(current=current, releases=infos, lock_owner=None)


# (live revision per host, the revision asked for, --force) -> nothing to do?
ALREADY_LIVE = [
    ("same revision live on every host", [("abc", "abc")], "abc", False, True),
    ("one host on another revision", [("abc", "abc"), ("old", "old")], "abc", False, False),
    ("--force deploys it again", [("abc", "abc")], "abc", True, False),
    ("no revision known (a directory upload)", [("abc", "abc")], "", False, False),
    ("a host with nothing live", [(None, "")], "abc", False, False),
]


@pytest.mark.parametrize(
    "hosts,revision,force,expected", [c[1:] for c in ALREADY_LIVE], ids=[c[0] for c in ALREADY_LIVE]
)
def test_already_live(hosts, revision, force, expected):
    states = {}
    for i, (rev, _) in enumerate(hosts):
        if rev is None:
            states[f"w{i}"] = host(None)
        else:
            states[f"w{i}"] = host(R2, (R1, COMPLETE, "older"), (R2, LIVE, rev))
    assert plan.already_live(states, revision, force) is expected


# (releases on the host, live one, --release) -> target, or the error's words
ROLLBACK = [
    ("previous complete one", [(R1, COMPLETE), (R2, LIVE)], R2, None, R1),
    ("skips a failed one", [(R1, COMPLETE), (R2, FAILED), (R3, LIVE)], R3, None, R1),
    ("a rolled-back release is a target when named", [(R1, ROLLED_BACK), (R2, LIVE)], R2, R1, R1),
    ("named and complete", [(R1, COMPLETE), (R2, COMPLETE), (R3, LIVE)], R3, R2, R2),
    ("named but failed", [(R1, FAILED), (R2, LIVE)], R2, R1, "is failed, not complete"),
    ("named but absent", [(R2, LIVE)], R2, R1, "does not exist on this host"),
    ("nothing older", [(R2, LIVE)], R2, None, "no complete release older than"),
]


@pytest.mark.parametrize(
    "releases,current,wanted,expected", [c[1:] for c in ROLLBACK], ids=[c[0] for c in ROLLBACK]
)
def test_rollback_to(releases, current, wanted, expected):
    state = host(current, *[(name, st, "") for name, st in releases])
    if expected.startswith("2026"):
        assert plan.rollback_to(state, wanted) == expected
    else:
        with pytest.raises(AtomicDeployError, match=expected):
            plan.rollback_to(state, wanted)


def test_options_name_a_switch_and_a_rollback():
    assert plan.Options(stage="prod").action == "rollback"
    assert plan.Options(stage="prod", switch_only=True).action == "switch"


class NoConnection:
    """Any use of the connection fails the test: a dry run must not send these."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the dry run used the connection ({name})")


def test_a_dry_run_records_what_changes_something_and_runs_no_python_hook():
    remote = DryRemote(
        HostConfig(name="web1", deploy_path="/srv/app", hostname="web1"), NoConnection()
    )
    called = []
    assert remote.run("mkdir -p /srv/app/releases/x", "release") == (0, "")
    remote.call("hook after_upload", "build_info", lambda: called.append(1))
    assert called == []
    assert remote.recorded == [
        ("release", "mkdir -p /srv/app/releases/x"),
        ("hook after_upload", "python: build_info(c, cfg)"),
    ]


def test_a_dry_run_sends_the_read_only_stand_in_in_place_of_the_script(monkeypatch):
    sent = []

    def real_run(self, script, step, **kw):
        sent.append((script, kw.get("read_only")))
        return 0, "state"

    monkeypatch.setattr("atomicdeploy.remote.Remote.run", real_run)
    remote = DryRemote(
        HostConfig(name="web1", deploy_path="/srv/app", hostname="web1"), NoConnection()
    )
    assert remote.run("take the lock", "setup", stand_in="read the state") == (0, "state")
    assert remote.run("read", "state", read_only=True) == (0, "state")
    assert sent == [("read the state", True), ("read", True)]
    assert remote.recorded == [("setup", "take the lock")]


def test_one_fab_call_reads_the_inventory_once(tmp_path: Path, monkeypatch):
    """The stage task hands the inventory it read to the task that follows it."""
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "hosts:\n  web1:\n    deploy_path: /srv/app\n    labels: {stage: test}\n",
        encoding="utf-8",
    )
    reads = []
    real = inventory_mod.load

    def counting(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(inventory_mod, "load", counting)
    program = Program(namespace=tasks.namespace(inv), name="fab", binary="fab")
    with pytest.raises(SystemExit) as exit_:
        # A bad --batch stops before any host is contacted (exit 2).
        program.run(["fab", "test", "deploy", "--batch", "none", "--source", str(tmp_path)])
    assert exit_.value.code == 2
    assert reads == [inv]
