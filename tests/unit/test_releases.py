"""releases: names, the releases log, and the rollback and cleanup decisions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomicdeploy.releases import (
    BUILDING,
    COMPLETE,
    FAILED,
    LIVE,
    ROLLED_BACK,
    STATES,
    LogEntry,
    ReleaseInfo,
    cleanup_victims,
    fold,
    new_release_name,
    parse_log,
    parse_state,
    rollback_target,
)

NOW = datetime(2026, 11, 22, 10, 15, 30, 123456, tzinfo=UTC)
NAME = re.compile(r"^\d{8}T\d{6}Z(\.\d{2})?$")


# --- release names ----------------------------------------------------------------------------


def test_new_release_name_format():
    name = new_release_name(NOW)
    assert name == "20261122T101530Z"
    assert NAME.match(name)


def test_new_release_name_is_utc():
    paris = timezone(timedelta(hours=2))
    assert new_release_name(datetime(2026, 6, 1, 2, 0, 0, tzinfo=paris)) == "20260601T000000Z"
    new_york = timezone(timedelta(hours=-5))
    assert new_release_name(datetime(2026, 12, 31, 22, 0, 0, tzinfo=new_york)) == (
        "20270101T030000Z"
    )


def test_new_release_name_suffix_when_taken():
    base = "20261122T101530Z"
    assert new_release_name(NOW, [base]) == f"{base}.01"
    assert new_release_name(NOW, iter([base, f"{base}.01"])) == f"{base}.02"
    assert new_release_name(NOW, ["20261122T101529Z", "other"]) == base
    with pytest.raises(ValueError, match="no free release name"):
        new_release_name(NOW, [base] + [f"{base}.{n:02d}" for n in range(1, 100)])


def test_new_release_name_suffix_sorts_between_seconds():
    base = new_release_name(NOW)
    first = new_release_name(NOW, [base])
    second = new_release_name(NOW, [base, first])
    later = new_release_name(NOW + timedelta(seconds=1))
    assert [base, first, second, later] == sorted([later, second, base, first])
    assert base < first < second < later
    assert all(NAME.match(n) for n in (base, first, second, later))


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=5),
)
def test_new_release_names_sort_in_time_order(now, taken_count):
    base = new_release_name(now)
    taken = [base] + [f"{base}.{n:02d}" for n in range(1, taken_count)]
    name = new_release_name(now, taken if taken_count else [])
    assert NAME.match(name)
    assert all(t < name for t in taken) if taken_count else name == base
    assert name < new_release_name(now + timedelta(seconds=1))


# --- the releases log -------------------------------------------------------------------------


def test_log_entry_render_is_one_sorted_ascii_json_line():
    entry = LogEntry("R1", LIVE, "2026-01-01T00:00:00Z", user="zoë", revision="abc", note="a\nb")
    line = entry.render()
    assert "\n" not in line and line.isascii()
    assert list(json.loads(line)) == sorted(json.loads(line))
    assert json.loads(line) == {
        "release": "R1",
        "state": "live",
        "time": "2026-01-01T00:00:00Z",
        "user": "zoë",
        "revision": "abc",
        "note": "a\nb",
    }
    minimal = LogEntry("R1", BUILDING, "t").render()
    assert json.loads(minimal) == {"release": "R1", "state": "building", "time": "t"}


def test_log_round_trip():
    entries = [
        LogEntry("R1", BUILDING, "t1", user="alice", revision="abc"),
        LogEntry("R1", COMPLETE, "t2"),
        LogEntry("R1", ROLLED_BACK, "t3", note="rolled back to R0 \u2028 it's"),
    ]
    text = "\n".join(e.render() for e in entries) + "\n"
    assert parse_log(text) == entries


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.builds(
        LogEntry,
        release=st.text(),
        state=st.sampled_from(STATES),
        time=st.text(),
        user=st.text(),
        revision=st.text(),
        note=st.text(),
    )
)
def test_log_round_trip_property(entry):
    assert parse_log(entry.render()) == [entry]
    assert parse_log(entry.render() + "\n" + entry.render() + "\n") == [entry, entry]


def test_parse_log_skips_torn_and_garbage_lines():
    good1 = LogEntry("R1", COMPLETE, "t1").render()
    good2 = LogEntry("R2", BUILDING, "t2").render()
    text = "\n".join(
        [
            good1,
            '{"release": "R2", "sta',  # torn by a crash
            "",
            "   ",
            "not json at all",
            "[1, 2]",
            "123",
            "null",
            '"a string"',
            '{"state": "complete"}',  # no release
            '{"release": "R3"}',  # no state
            good2,
            good1[: len(good1) // 2],
        ]
    )
    assert parse_log(text) == [LogEntry("R1", COMPLETE, "t1"), LogEntry("R2", BUILDING, "t2")]


def test_parse_log_tolerates_missing_optional_fields():
    assert parse_log('{"release": "R1", "state": "live"}') == [LogEntry("R1", LIVE, "")]
    assert parse_log("") == []


# --- fold -------------------------------------------------------------------------------------


def log(*rows: tuple[str, str]) -> list[LogEntry]:
    return [LogEntry(r, s, f"t{i}") for i, (r, s) in enumerate(rows)]


def states(infos: list[ReleaseInfo]) -> list[tuple[str, str]]:
    return [(i.name, i.state) for i in infos]


def test_fold_live_only_for_current():
    entries = log(
        ("R1", BUILDING),
        ("R1", COMPLETE),
        ("R1", LIVE),
        ("R2", BUILDING),
        ("R2", COMPLETE),
        ("R2", LIVE),
    )
    infos = fold(["R2", "R1"], entries, "R2")
    assert states(infos) == [("R1", COMPLETE), ("R2", LIVE)]  # old live became complete
    assert [i.live for i in infos] == [False, True]
    assert [i.good for i in infos] == [True, True]


def test_fold_current_complete_is_live_and_current_failed_stays_failed():
    infos = fold(["R1", "R2"], log(("R1", COMPLETE), ("R2", FAILED)), "R1")
    assert states(infos) == [("R1", LIVE), ("R2", FAILED)]
    infos = fold(["R1"], log(("R1", BUILDING)), "R1")
    assert states(infos) == [("R1", BUILDING)] and infos[0].live


def test_fold_unknown_dirs_and_log_only_releases():
    infos = fold(["R1", "manual-copy"], log(("R1", COMPLETE), ("R0", COMPLETE)), None)
    # Sorted by name; a directory the log never saw is unknown; a logged but deleted
    # release is not listed.
    assert states(infos) == [("R1", COMPLETE), ("manual-copy", "unknown")]
    assert not infos[1].good


def test_fold_keeps_first_user_and_time_and_last_revision():
    entries = [
        LogEntry("R1", BUILDING, "t1", user="alice", revision="r1"),
        LogEntry("R1", COMPLETE, "t2", user="bob"),
        LogEntry("R1", LIVE, "t3", user="carol", revision="r2"),
    ]
    (info,) = fold(["R1", "R1"], entries, "R1")
    assert (info.user, info.created, info.revision) == ("alice", "t1", "r2")


# --- rollback_target --------------------------------------------------------------------------


def infos_of(rows: list[tuple[str, str]], current: str | None) -> list[ReleaseInfo]:
    names = [r for r, _ in rows]
    entries = [LogEntry(r, s, "t") for r, s in rows if s != "unknown"]
    return fold(names, entries, current)


def test_rollback_target_is_newest_good_older_release():
    infos = infos_of([("R1", COMPLETE), ("R2", COMPLETE), ("R3", LIVE)], "R3")
    assert rollback_target(infos, "R3") == "R2"


def test_rollback_target_skips_bad_releases():
    rows = [
        ("R1", COMPLETE),
        ("R2", FAILED),
        ("R3", BUILDING),
        ("R4", ROLLED_BACK),
        ("R5", "unknown"),
        ("R6", LIVE),
    ]
    assert rollback_target(infos_of(rows, "R6"), "R6") == "R1"


def test_rollback_target_ignores_newer_releases():
    rows = [("R1", COMPLETE), ("R2", LIVE), ("R3", COMPLETE)]
    assert rollback_target(infos_of(rows, "R2"), "R2") == "R1"


def test_rollback_target_none_when_nothing_older():
    assert rollback_target(infos_of([("R1", LIVE)], "R1"), "R1") is None
    rows = [("R1", FAILED), ("R2", ROLLED_BACK), ("R3", LIVE)]
    assert rollback_target(infos_of(rows, "R3"), "R3") is None
    assert rollback_target([], None) is None


def test_rollback_target_with_suffixed_names():
    base = "20261122T101530Z"
    rows = [(base, COMPLETE), (f"{base}.01", LIVE)]
    assert rollback_target(infos_of(rows, f"{base}.01"), f"{base}.01") == base


def test_rollback_target_without_current():
    rows = [("R1", COMPLETE), ("R2", COMPLETE), ("R3", FAILED)]
    assert rollback_target(infos_of(rows, None), None) == "R2"


# --- cleanup_victims --------------------------------------------------------------------------


def test_cleanup_keeps_keep_releases_good_ones():
    rows = [(f"R{i}", COMPLETE) for i in range(1, 8)] + [("R8", LIVE)]
    infos = infos_of(rows, "R8")
    assert cleanup_victims(infos, 5, "R8") == ["R1", "R2", "R3"]
    assert cleanup_victims(infos, 8, "R8") == []
    assert cleanup_victims(infos, 100, "R8") == []


def test_cleanup_keep_one_still_keeps_current_and_rollback_target():
    infos = infos_of([("R1", COMPLETE), ("R2", COMPLETE), ("R3", LIVE)], "R3")
    assert cleanup_victims(infos, 1, "R3") == ["R1"]


def test_cleanup_keeps_current_even_when_it_is_not_among_the_newest():
    """After a rollback to an old release, newer complete ones must not push it out."""
    rows = [("R1", COMPLETE), ("R2", LIVE), ("R3", COMPLETE), ("R4", COMPLETE)]
    infos = infos_of(rows, "R2")
    victims = cleanup_victims(infos, 1, "R2")
    assert "R2" not in victims and "R1" not in victims  # live and rollback target
    assert victims == ["R3"]


def test_cleanup_deletes_bad_releases_but_never_unknown_dirs():
    rows = [
        ("R1", COMPLETE),
        ("R2", FAILED),
        ("R3", ROLLED_BACK),
        ("R4", BUILDING),
        ("R5", "unknown"),
        ("R6", COMPLETE),
        ("R7", LIVE),
        ("R8", FAILED),
    ]
    infos = infos_of(rows, "R7")
    assert cleanup_victims(infos, 5, "R7") == ["R2", "R3", "R4", "R8"]
    assert "R5" not in cleanup_victims(infos, 1, "R7")


@settings(max_examples=50, deadline=None, database=None)
@given(
    rows=st.lists(
        st.sampled_from([COMPLETE, FAILED, ROLLED_BACK, BUILDING, "unknown", LIVE]),
        min_size=0,
        max_size=12,
    ),
    keep=st.integers(min_value=1, max_value=6),
    current_at=st.integers(min_value=-1, max_value=11),
)
def test_cleanup_invariants(rows, keep, current_at):
    named = [(f"R{i:02d}", s) for i, s in enumerate(rows)]
    current = named[current_at][0] if 0 <= current_at < len(named) else None
    infos = infos_of(named, current)
    victims = cleanup_victims(infos, keep, current)
    by_name = {i.name: i for i in infos}
    assert current not in victims
    assert rollback_target(infos, current) not in victims
    assert all(by_name[v].state != "unknown" for v in victims)
    kept_good = [i.name for i in infos if i.good and i.name not in victims]
    assert len(kept_good) >= min(keep, sum(i.good for i in infos))
    assert all(by_name[v].state in (FAILED, ROLLED_BACK, BUILDING, COMPLETE) for v in victims)
    assert victims == sorted(victims)


# --- parse_state ------------------------------------------------------------------------------

MARKERS = ("@@c@@", "@@r@@", "@@l@@", "@@k@@", "@@v@@", "@@f@@")


def test_parse_state_sections():
    out = "\n".join(
        [
            "@@c@@",
            "releases/R2",
            "@@r@@",
            "R1",
            "R2",
            "R3",
            "@@l@@",
            LogEntry("R1", COMPLETE, "t").render(),
            LogEntry("R2", COMPLETE, "t").render(),
            "@@k@@",
            '{"user": "alice"}',
            "",
        ]
    )
    state = parse_state(out, MARKERS)
    assert state.current == "R2"
    assert states(list(state.releases)) == [("R1", COMPLETE), ("R2", LIVE), ("R3", "unknown")]
    assert state.lock_owner == '{"user": "alice"}'
    assert state.get("R3").state == "unknown" and state.get("R9") is None


def test_parse_state_accepts_absolute_or_slashed_current_and_no_current():
    for target in ("/srv/app/releases/R1", "releases/R1/"):
        state = parse_state(f"@@c@@\n{target}\n@@r@@\nR1\n@@l@@\n@@k@@\n", MARKERS)
        assert state.current == "R1"
    state = parse_state("@@c@@\n@@r@@\n@@l@@\n@@k@@\n", MARKERS)
    assert (state.current, state.releases, state.lock_owner) == (None, (), None)


def test_a_release_directory_name_holding_other_line_breaks_is_one_name():
    """`find` ends each name with "\\n" only: "\\r", "\\x1e" or "\\u2028" inside a name (which
    str.splitlines would also split on) leave it one directory, never two."""
    odd = "R1\rspoofed\x1e-x\u2028\x85"
    state = parse_state(f"@@c@@\n@@r@@\n{odd}\nR2\n@@l@@\n@@k@@\n", MARKERS)
    assert [r.name for r in state.releases] == sorted([odd, "R2"])


def test_a_release_directory_named_with_a_newline_is_not_listed(tmp_path):
    """A directory `x<newline>@@ad:lock@@<newline>...` would read as two names, or as a
    marker and a section of its own choosing: `read_state` leaves names holding a newline
    out (no release name holds one); other odd names come through whole."""
    import subprocess

    from atomicdeploy import shell
    from atomicdeploy.layout import Layout

    lay = Layout(str(tmp_path / "app"))
    (tmp_path / "app" / "releases").mkdir(parents=True)
    forged = f"x\n{shell.STATE_MARKERS[3]}\n20990101T000000Z"
    for name in ("20261122T000000Z", forged, "R\x1b[2J\r"):
        (tmp_path / "app" / "releases" / name).mkdir()
    # Bytes, as the SSH channel gives them (text=True would turn "\r" into "\n").
    out = subprocess.run(
        ["sh", "-c", shell.read_state(lay)], capture_output=True, check=True
    ).stdout.decode()
    state = parse_state(out, shell.STATE_MARKERS)
    # A name of no known kind sorts first, as the oldest.
    assert [r.name for r in state.releases] == ["R\x1b[2J\r", "20261122T000000Z"]
    assert state.lock_owner is None
