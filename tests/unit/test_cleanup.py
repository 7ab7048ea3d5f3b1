"""cleanup: which releases go, which odd names are left alone, and when the log is compacted.

Decided locally from the state read under the lock; the script sent ends with the unlock
whatever it holds."""

from __future__ import annotations

from atomicdeploy import shell
from atomicdeploy.config import Config, RunInfo
from atomicdeploy.inventory import HostConfig
from atomicdeploy.releases import COMPLETE, FAILED, HostState, LogEntry, fold
from atomicdeploy.steps import cleanup
from tests import faults

RUN = RunInfo(stage="prod", user="alice", local_host="laptop", pid=1, started="t", token="abc")
NEW = "20261124T000000Z"


def cfg(keep: int = 1) -> Config:
    h = HostConfig(name="web1", deploy_path="/srv/app", hostname="web1", keep_releases=keep)
    return Config(host=h, run=RUN, release=NEW, previous="20261123T000000Z")


def state(on_disk: list[str], entries: list[LogEntry]) -> HostState:
    return HostState(
        current="20261123T000000Z",
        releases=tuple(fold(on_disk, entries, None)),
        lock_owner=None,
        entries=tuple(entries),
    )


class Recorder:
    name = "web1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def run(self, script: str, step: str, **kw: object) -> tuple[int, str]:
        self.sent.append((step, script))
        return 0, ""


OLD = ["20261120T000000Z", "20261121T000000Z", "20261122T000000Z", "20261123T000000Z"]


def test_a_logged_name_that_is_no_release_name_is_left_alone_and_the_rest_removed():
    odd_names = ["-x", "--help", ".."]
    names = [*odd_names, *OLD]
    entries = [LogEntry(n, COMPLETE, "t") for n in names]
    victims, odd = cleanup.victims_after_go_live(state(names, entries), cfg(keep=1))
    assert sorted(odd) == sorted(odd_names)
    assert victims == OLD[:3]  # the new live one and the rollback target stay
    script = shell.remove_releases(cfg().layout, victims)  # building it never raises
    assert "-x" not in script
    faults.record(
        "path safety",
        "logged release names '-x', '--help' (unit)",
        outcome="left alone and reported; the others removed",
    )


def test_the_unlock_is_in_the_script_whether_or_not_anything_is_removed():
    for victims in ([], OLD[:2]):
        remote = Recorder()
        cleanup.cleanup_and_unlock(remote, cfg(), victims, state(OLD, []))
        ((step, script),) = remote.sent
        assert step == "cleanup"
        assert script.endswith(f"{shell.unlock_own(cfg().layout, 'abc')}; exit $rc")


def test_the_log_is_compacted_only_past_the_threshold_to_the_releases_that_stay():
    kept_log = [LogEntry(n, COMPLETE, "t") for n in OLD]
    gone = [LogEntry(f"1999{i:012d}", FAILED, "t") for i in range(shell.LOG_COMPACT_AT)]
    layout = cfg().layout

    remote = Recorder()
    short = kept_log + gone[: shell.LOG_COMPACT_AT - len(kept_log)]
    cleanup.cleanup_and_unlock(remote, cfg(), OLD[:1], state(OLD, short))
    assert "releases.log.tmp" not in remote.sent[0][1]

    remote = Recorder()
    cleanup.cleanup_and_unlock(remote, cfg(), OLD[:1], state(OLD, kept_log + gone))
    script = remote.sent[0][1]
    assert shell.compact_log(layout, sorted([*OLD[1:], NEW])) in script
    # Removal first, then the rewrite, then the unlock.
    unlock = script.index(shell.unlock_own(layout, "abc"))
    assert script.index("rm -rf") < script.index("releases.log.tmp") < unlock


def test_a_victim_the_release_name_rules_refuse_still_leaves_the_lock_released():
    """Should a refused name ever reach the removal (it is filtered out before), the error
    goes up only after the unlock was sent: no lock is left held."""
    import pytest

    from atomicdeploy.errors import ConfigError

    remote = Recorder()
    with pytest.raises(ConfigError):
        cleanup.cleanup_and_unlock(remote, cfg(), ["-x"], state(OLD, []))
    assert remote.sent == [("unlock", shell.unlock_own(cfg().layout, "abc"))]
