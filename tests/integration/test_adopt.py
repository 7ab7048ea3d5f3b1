"""Taking over hosts that Deployer or Capistrano laid out, on real sshd hosts.

Each layout is written as that tool writes it (Deployer 7: integer release names,
`.dep/releases_log` JSON lines, `.dep/latest_release`, a relative `current`, `BAD_RELEASE` in
a release it rolled back from; Capistrano 3: 14-digit UTC names, `revisions.log`, `REVISION`
files, an absolute `current`). The first deploy, a rollback to an adopted release and
cleanup then work as on a host we laid out; the old tool's files are never changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.kit.load import set_version
from tests.kit.web import WebHosts

from .conftest import REPO, Project, example_project, under_load, write_app

pytestmark = pytest.mark.integration

DEPLOYER = ["1", "2", "3"]
CAPISTRANO = ["20260101000000", "20260102000000", "20260103000000"]


def release_of(proc) -> str:
    return re.search(r"deployed (\S+) to", proc.stdout).group(1)


def deployer_host(path: Path, app_writer, version: int = 7) -> None:
    """Deployer 7 after three deploys, release 2 marked bad (as `dep rollback` marks the
    release it leaves)."""
    (path / ".dep").mkdir(parents=True)
    (path / "shared").mkdir()
    (path / "shared" / ".env").write_text("APP_KEY=from-deployer\n")
    log = []
    for n in DEPLOYER:
        release = path / "releases" / n
        app_writer(release, f"d{n}")
        (release / ".env").unlink(missing_ok=True)
        (release / ".env").symlink_to("../../shared/.env")
        (release / "REVISION").write_text(f"{n * 40}\n")
        log.append(
            json.dumps(
                {
                    "created_at": f"2026-01-0{n}T10:00:00+0000",
                    "release_name": n,
                    "user": "alice",
                    "target": "main",
                }
            )
        )
    if version == 7:
        (path / ".dep" / "releases_log").write_text("\n".join(log) + "\n")
    else:  # Deployer 6: `.dep/releases`, "time,name" lines
        lines = [f"2019010{n}100000,{n}" for n in DEPLOYER]
        (path / ".dep" / "releases").write_text("\n".join(lines) + "\n")
    (path / ".dep" / "latest_release").write_text("3")
    (path / "releases" / "2" / "BAD_RELEASE").write_text("2026-01-03T09:00:00+0000,alice\n")
    (path / "current").symlink_to("releases/3")


def capistrano_host(path: Path, app_writer) -> None:
    """Capistrano 3 after three deploys: absolute links, revisions.log, REVISION files."""
    (path / "shared").mkdir(parents=True)
    (path / "shared" / ".env").write_text("APP_KEY=from-capistrano\n")
    lines = []
    for i, n in enumerate(CAPISTRANO):
        release = path / "releases" / n
        app_writer(release, f"c{i + 1}")
        (release / ".env").unlink(missing_ok=True)
        (release / ".env").symlink_to(path / "shared" / ".env")
        sha = "abc"[i] * 40
        (release / "REVISION").write_text(sha + "\n")
        (release / "REVISION_TIME").write_text("1767225600\n")
        lines.append(f"Branch main (at {sha}) deployed as release {n} by bob")
    (path / "revisions.log").write_text("\n".join(lines) + "\n")
    (path / "current").symlink_to(path / "releases" / CAPISTRANO[-1])


def files_of(path: Path, names: list[str]) -> dict[str, bytes]:
    return {n: (path / n).read_bytes() for n in names if (path / n).exists()}


@pytest.fixture
def taken(project: Project) -> Project:
    project.config.update(keep_releases=5, shared_dirs=[], writable_dirs=[])
    return project


def lay_out(project: Project, kind: str) -> None:
    for h in project.hosts:
        writer = deployer_host if kind == "deployer" else capistrano_host
        writer(project.deploy_path(h.name), lambda d, v: write_app(d, v))


def test_a_deployer_host_is_taken_over(taken):
    p = taken
    lay_out(p, "deployer")
    keep = [".dep/releases_log", ".dep/latest_release", "shared/.env", "releases/3/REVISION"]
    before = {h.name: files_of(p.deploy_path(h.name), keep) for h in p.hosts}
    listed = p.ok("test", "releases").stdout
    assert re.search(r"3 \*\s+live\s+3{40}", listed), listed
    assert re.search(r"\n\s+2\s+rolled back", listed) and "alice" in listed
    first = release_of(p.ok("test", "deploy"))
    assert {p.current(h.name) for h in p.hosts} == {f"releases/{first}"}
    assert p.served("web1", ".env") == "APP_KEY=from-deployer\n"  # shared/ kept as it was
    p.ok("test", "rollback")
    assert {p.current(h.name) for h in p.hosts} == {"releases/3"}  # an adopted release
    p.ok("test", "rollback", "--release", "1")
    assert p.served("web2", "public/index.php").startswith("<?php echo 'version d1'")
    # Cleanup retired release 2 (rolled back from, as Deployer's BAD_RELEASE says); the
    # old tool's other files were never edited.
    assert "2" not in p.releases("web1")
    for h in p.hosts:
        assert files_of(p.deploy_path(h.name), keep) == before[h.name]


def test_deployers_rollback_rule_holds_its_bad_release_is_skipped(taken):
    p = taken
    lay_out(p, "deployer")
    p.ok("test", "rollback")  # from Deployer's 3: not to 2 (BAD_RELEASE), to 1
    assert {p.current(h.name) for h in p.hosts} == {"releases/1"}
    refused = p.fab("test", "rollback", "--release", "2")
    assert "release 2 is rolled back, not complete: refusing" not in refused.stderr
    assert refused.returncode == 0  # named explicitly, as Deployer allows it too


def test_cleanup_counts_adopted_releases_by_age(taken):
    p = taken
    p.config["keep_releases"] = 2
    lay_out(p, "capistrano")
    r1 = release_of(p.ok("test", "deploy"))
    # keep_releases 2: the live one and the rollback target stay, the oldest adopted go.
    assert p.releases("web1") == sorted([CAPISTRANO[-1], r1])
    time.sleep(1.1)
    r2 = release_of(p.ok("test", "deploy"))
    assert p.releases("web1") == sorted([r1, r2])
    log = (p.deploy_path("web1") / "revisions.log").read_text()
    assert log.count("deployed as release") == 3  # never edited


def test_a_capistrano_host_is_taken_over_and_rolled_back_to_an_adopted_release(taken):
    p = taken
    lay_out(p, "capistrano")
    listed = p.ok("test", "releases").stdout
    assert re.search(rf"{CAPISTRANO[-1]} \*\s+live\s+c{{40}}", listed), listed
    assert "bob" in listed and "2026-01-02T00:00:00Z" in listed
    p.ok("test", "deploy")
    back = p.ok("test", "rollback", "--release", CAPISTRANO[0])
    assert f"releases/{CAPISTRANO[0]}" in back.stdout
    assert {p.current(h.name) for h in p.hosts} == {f"releases/{CAPISTRANO[0]}"}
    assert p.served("web3", ".env") == "APP_KEY=from-capistrano\n"


def test_a_deployer_lock_stops_our_deploy_and_ours_stops_deployers(taken):
    p = taken
    lay_out(p, "deployer")
    lock = p.deploy_path("web2") / ".dep" / "deploy.lock"
    lock.write_text("carol\n")  # as `dep deploy` writes it
    proc = p.fab("test", "deploy")
    assert proc.returncode == 1
    assert "[web2] failed at step 'lock' (not live): locked by Deployer (user carol)" in (
        proc.stderr
    )
    assert {p.current(h.name) for h in p.hosts} == {"releases/3"}
    unlocked = p.ok("test", "unlock")
    assert "[web2] removed the lock of Deployer (user carol)" in unlocked.stdout
    # Ours held (a directory): Deployer's own lock command fails, so its deploy stops.
    lock.mkdir()
    deployer_lock = f"[ -f {lock} ] && echo +locked || echo dave > {lock}"
    assert subprocess.run(["sh", "-c", deployer_lock], capture_output=True).returncode != 0


# --- the switch from the old layout under load ---------------------------------------------


def example_release(release: Path, version: str) -> None:
    shutil.copytree(REPO / "examples" / "app", release)
    set_version(release, version)


@pytest.fixture
def old_site(tmp_path, sshd_hosts):
    """Two hosts laid out by Capistrano, served as its users serve them: nginx's root is
    `current/public` with $realpath_root, php-fpm with opcache (validate_timestamps=0)."""
    hosts = list(sshd_hosts)[:2]
    project = example_project(tmp_path, hosts, {"keep_releases": 3})
    paths = [project.deploy_path(h.name) for h in hosts]
    for path in paths:
        capistrano_host(path, lambda rel, v: example_release(rel, "1"))
    with WebHosts(tmp_path / "web", paths, mode="realpath", names=[h.name for h in hosts]) as w:
        for h, web in zip(hosts, w, strict=True):
            project.overrides[h.name] = {
                "opcache": {"strategy": "fcgi", "socket": str(web.fpm_socket)}
            }
        project.webs = list(w)
        yield project


def test_the_switch_from_a_capistrano_layout_under_load(old_site):
    site = old_site
    set_version(site.app, "2")
    _, verdict = under_load(site, "test", "deploy", expected="2")
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    # back to Capistrano's own last release
    _, verdict = under_load(site, "test", "rollback", expected="1")
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    assert os.readlink(site.deploy_path("web1") / "current") == f"releases/{CAPISTRANO[-1]}"


def test_a_home_relative_deploy_path_is_found_on_the_host(project):
    """Deployer users write `deploy_path: ~/app`: the SSH user's home, asked on the host."""
    import uuid

    where = f"atomicdeploy-test-{uuid.uuid4().hex[:8]}"
    home = Path(os.path.expanduser("~"))
    project.config.update(deploy_path=f"~/{where}/{{{{alias}}}}", writable_dirs=[])
    for h in project.hosts:
        project.overrides.setdefault(h.name, {})["deploy_path"] = f"~/{where}/{h.name}"
    try:
        first = release_of(project.ok("test", "deploy"))
        for h in project.hosts:
            assert os.readlink(home / where / h.name / "current") == f"releases/{first}"
        listed = project.ok("test", "releases").stdout
        assert first in listed and f"  deploy_path: {home / where / 'web1'}" in listed
        project.ok("test", "deploy")
        project.ok("test", "rollback")
        assert os.readlink(home / where / "web2" / "current") == f"releases/{first}"
    finally:
        shutil.rmtree(home / where, ignore_errors=True)


def test_a_deployer_6_host_is_taken_over(taken):
    p = taken
    for h in p.hosts:
        deployer_host(p.deploy_path(h.name), lambda d, v: write_app(d, v), version=6)
    listed = p.ok("test", "releases").stdout
    assert re.search(r"\n\s+1\s+complete\s+1{40}\s+2019-01-01T10:00:00Z", listed), listed
    p.ok("test", "deploy")
    p.ok("test", "rollback")
    assert {p.current(h.name) for h in p.hosts} == {"releases/3"}


def test_an_ansistrano_host_is_taken_over(taken):
    """ansistrano: releases named by `date -u +%Y%m%d%H%M%SZ`, an absolute `current`, no log."""
    p = taken
    names = ["20260101000000Z", "20260102000000Z"]
    for h in p.hosts:
        path = p.deploy_path(h.name)
        for i, n in enumerate(names):
            write_app(path / "releases" / n, f"a{i + 1}")
        (path / "shared").mkdir()
        (path / "current").symlink_to(path / "releases" / names[-1])
    listed = p.ok("test", "releases").stdout
    assert re.search(rf"{names[0]}\s+complete\s+-\s+2026-01-01T00:00:00Z", listed), listed
    p.ok("test", "deploy")
    p.ok("test", "rollback", "--release", names[0])
    assert {p.current(h.name) for h in p.hosts} == {f"releases/{names[0]}"}
    assert p.served("web1", "public/index.php").startswith("<?php echo 'version a1'")
