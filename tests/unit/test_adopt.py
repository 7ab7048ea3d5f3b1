"""Hosts laid out by Deployer, Capistrano or ansistrano: their releases read as ours (no
hosts: the state answer is parsed as `shell.read_state` prints it)."""

from __future__ import annotations

import json

import pytest

from atomicdeploy import adopt, shell
from atomicdeploy.config import Config, RunInfo
from atomicdeploy.inventory import HostConfig
from atomicdeploy.releases import (
    COMPLETE,
    LIVE,
    ROLLED_BACK,
    LogEntry,
    cleanup_victims,
    fold,
    parse_state,
    rollback_target,
)
from atomicdeploy.steps import cleanup

M = shell.STATE_MARKERS


def answer(current: str, names: list[str], foreign: list[str], log: list[str] = ()) -> str:
    cur, rel, lg, lock, rsync, other = M
    return "\n".join([cur, current, rel, *names, lg, *log, lock, "", rsync, other, *foreign, ""])


def deployer_line(name: str, user: str = "alice") -> str:
    data = {
        "created_at": f"2026-01-0{name}T10:00:00+0000",
        "release_name": name,
        "user": user,
        "target": "main",
    }
    return "D " + json.dumps(data)


def test_a_deployer_host_its_releases_complete_bad_ones_not_targets():
    text = answer(
        "releases/3",
        ["1", "2", "3", "10"],
        [deployer_line(n) for n in ("1", "2", "3", "10")]
        + ["B 10/BAD_RELEASE", "R /srv/app/releases/2/REVISION:" + "ab" * 20],
    )
    state = parse_state(text, M)
    by = {r.name: r for r in state.releases}
    assert [r.name for r in state.releases] == ["1", "2", "3", "10"]  # as integers
    assert by["3"].state == LIVE and by["1"].state == COMPLETE
    assert by["10"].state == ROLLED_BACK  # BAD_RELEASE
    assert by["2"].revision == "ab" * 20 and by["1"].user == "alice"
    assert by["1"].created == "2026-01-01T10:00:00+0000"
    assert rollback_target(list(state.releases), "3") == "2"


def test_a_capistrano_host_absolute_current_and_its_revisions_log():
    names = ["20260101000000", "20260102000000", "20260103000000"]
    log = [
        f"C Branch main (at {c * 40}) deployed as release {n} by bob"
        for c, n in zip("abc", names, strict=True)
    ]
    state = parse_state(answer(f"/srv/app/releases/{names[2]}", names, log), M)
    by = {r.name: r for r in state.releases}
    assert state.current == names[2] and by[names[2]].state == LIVE
    assert by[names[0]].revision == "a" * 40 and by[names[0]].user == "bob"
    assert by[names[1]].created == "2026-01-02T00:00:00Z"
    assert rollback_target(list(state.releases), names[2]) == names[1]


def test_ansistrano_names_without_any_log_are_adopted_but_not_other_strangers():
    state = parse_state(
        answer(
            "releases/20260102000000Z",
            ["20260101000000Z", "20260102000000Z", "mine", "20260101T000000Z"],
            [],
        ),
        M,
    )
    by = {r.name: r.state for r in state.releases}
    assert by["20260101000000Z"] == COMPLETE and by["20260102000000Z"] == LIVE
    assert by["mine"] == "unknown"  # somebody else's: left alone
    assert by["20260101T000000Z"] == "unknown"  # our kind of name, never logged by us


@pytest.mark.parametrize(
    "names",
    [
        [
            "1",
            "2",
            "9",
            "10",
            "20260101000000",
            "20260101T120000Z",
            "20260102000000Z",
            "20260102T000000Z.01",
            "20260103T000000Z-v1.2.0",
        ],
    ],
)
def test_names_of_every_kind_sort_by_age(names):
    assert sorted(reversed(names), key=adopt.order) == names


def test_cleanup_counts_adopted_releases_by_age_keeping_live_and_rollback_target():
    run = RunInfo(stage="p", user="u", local_host="l", pid=1, started="t", token="x")
    host = HostConfig(name="web1", hostname="web1", deploy_path="/srv/app", keep_releases=2)
    cfg = Config(host=host, run=run, release="20261203T000000Z", previous="5")
    foreign = adopt.parse([deployer_line(str(n)) for n in range(1, 6)])
    infos = fold([str(n) for n in range(1, 6)], [], "5", foreign)
    state = parse_state(
        answer(
            "releases/5",
            [str(n) for n in range(1, 6)],
            [deployer_line(str(n)) for n in range(1, 6)],
        ),
        M,
    )
    assert [i.state for i in infos] == [COMPLETE] * 4 + [LIVE]
    victims, odd = cleanup.victims_after_go_live(state, cfg)
    assert victims == ["1", "2", "3", "4"] and not odd  # keeps 5 (rollback target), the new
    assert cleanup_victims(infos, 2, "5") == ["1", "2", "3"]
    assert LogEntry  # our log is not needed for any of this


# --- values Deployer users write --------------------------------------------------------------


def _parse(extra: str):
    from atomicdeploy.inventory.loader import parse

    return parse(f"config:\n  deploy_path: /srv/app\n{extra}hosts:\n  web1: {{}}\n").hosts[0]


def test_keep_releases_minus_one_keeps_every_complete_release():
    host = _parse("  keep_releases: -1\n")
    assert host.keep_releases == -1
    infos = fold(
        [str(n) for n in range(1, 9)],
        [],
        "8",
        adopt.Foreign(releases={str(n): adopt.Adopted() for n in range(1, 9)}),
    )
    assert cleanup_victims(infos, host.keep_releases, "8") == []


@pytest.mark.parametrize("mode", ["chgrp", "sticky"])
def test_chgrp_and_sticky_modes_give_the_web_servers_group_the_dirs(tmp_path, mode):
    import grp
    import os
    import subprocess

    from atomicdeploy.layout import Layout

    group = grp.getgrgid(os.getgid()).gr_name if os.getuid() else "daemon"
    host = _parse(
        f"  writable_dirs: [storage/logs]\n  writable_mode: {mode}\n  http_group: {group}\n"
    )
    release = tmp_path / "releases" / "R1"
    (release / "storage" / "logs" / "sub").mkdir(parents=True)
    (release / "storage" / "logs" / "a.log").write_text("x")
    script = shell.make_writable(
        Layout(str(tmp_path)),
        "R1",
        host.writable_dirs,
        host.writable_mode,
        http_group=host.http_group,
    )
    subprocess.run(["sh", "-c", script], check=True)
    logs = release / "storage" / "logs"
    for path in (logs, logs / "sub", logs / "a.log"):
        st = path.stat()
        assert grp.getgrgid(st.st_gid).gr_name == group
        assert st.st_mode & 0o060 == 0o060  # group may read and write
    setgid = bool(logs.stat().st_mode & 0o2000)
    assert setgid == (mode == "sticky")
    assert not (logs / "a.log").stat().st_mode & 0o2000  # never on files
    with pytest.raises(Exception, match="http_group is required"):
        _parse(f"  writable_dirs: [x]\n  writable_mode: {mode}\n")


def test_a_home_relative_deploy_path_is_checked_and_made_absolute():
    from atomicdeploy import homes
    from atomicdeploy.errors import ConfigError
    from atomicdeploy.inventory.loader import parse

    def with_path(path: str):
        text = f"config:\n  deploy_path: '{path}'\n  nginx: {{test: 'true'}}\nhosts:\n  w: {{}}\n"
        return parse(text).hosts[0]

    host = with_path("~/apps/shop")
    assert host.deploy_path == "~/apps/shop"
    assert host.nginx.root_file == "~/apps/shop/root_dir.nginx.conf"
    done = homes._resolved(host, "/home/deploy\n")
    assert done.deploy_path == "/home/deploy/apps/shop"
    assert done.nginx.root_file == "/home/deploy/apps/shop/root_dir.nginx.conf"
    for bad in ("~", "~/", "~/../etc", "~root/x"):
        with pytest.raises(ConfigError):
            with_path(bad)
    with pytest.raises(ConfigError, match="no absolute path"):
        homes._resolved(host, "relative")


def test_a_deployer_6_host_its_dep_releases_file():
    text = answer("releases/2", ["1", "2"], ["S 20190101100000,1", "S 20190102100000,2"])
    by = {r.name: r for r in parse_state(text, M).releases}
    assert by["1"].state == COMPLETE and by["2"].state == LIVE
    assert by["1"].created == "2019-01-01T10:00:00Z"
