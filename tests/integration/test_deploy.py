"""Deploy, deploy again, roll back, list, clean up: on three real sshd hosts."""

from __future__ import annotations

import re

import pytest

from .conftest import write_app

pytestmark = pytest.mark.integration


def release_of(proc) -> str:
    return re.search(r"deployed (\S+) to", proc.stdout).group(1)


def test_first_deploy_builds_links_and_goes_live_on_every_host(project):
    proc = project.ok("test", "deploy")
    name = release_of(proc)
    for h in project.hosts:
        path = project.deploy_path(h.name)
        assert project.current(h.name) == f"releases/{name}"
        assert project.served(h.name) == "<?php echo 'version 1';\n"
        release = path / "releases" / name
        # Shared paths are relative links into shared/, seeded from the first release.
        assert (release / "storage").is_symlink()
        assert str((release / "storage").readlink()) == "../../shared/storage"
        assert (path / "shared" / "storage" / "logs" / "seed.log").exists()
        assert (path / "shared" / ".env").read_text() == "APP_KEY=secret\n"
        assert [e["state"] for e in project.log(h.name)] == ["building", "complete", "live"]
        assert not project.locked(h.name)
        assert not (path / ".current.tmp").exists()
    assert "[web1] live: current -> releases/" in proc.stdout


def test_second_deploy_switches_and_keeps_shared_content(project):
    first = release_of(project.ok("test", "deploy"))
    for h in project.hosts:
        (project.deploy_path(h.name) / "shared" / "storage" / "upload.jpg").write_text("user data")
    write_app(project.app, "2")
    second = release_of(project.ok("test", "deploy"))
    assert second > first
    for h in project.hosts:
        assert project.current(h.name) == f"releases/{second}"
        assert project.served(h.name) == "<?php echo 'version 2';\n"
        assert project.served(h.name, "storage/upload.jpg") == "user data"
        assert project.releases(h.name) == [first, second]


def test_incremental_deploy_of_a_2000_file_app_sends_about_one_file(project):
    (project.app / ".env").unlink()  # .env lives in shared/ only, as in a real project
    for h in project.hosts:
        shared = project.deploy_path(h.name) / "shared"
        shared.mkdir(parents=True)
        (shared / ".env").write_text("APP_KEY=on-host\n")
    write_app(project.app, "1", extra_files=2000)
    first = project.ok("test", "deploy")
    sent = [int(n) for n in re.findall(r"uploaded (\d+) changed file", first.stdout)]
    assert len(sent) == 3 and min(sent) >= 2000
    (project.app / "public" / "index.php").write_text("<?php echo 'version 1.1';\n")
    second = project.ok("test", "deploy")
    sent = [int(n) for n in re.findall(r"uploaded (\d+) changed file", second.stdout)]
    assert sent == [1, 1, 1], second.stdout
    for h in project.hosts:
        assert project.served(h.name) == "<?php echo 'version 1.1';\n"
        assert project.served(h.name, "src/lib/d19/f1999.php") == "<?php // file 1999\n"


def test_rollback_returns_to_previous_release_and_marks_the_abandoned_one(project):
    first = release_of(project.ok("test", "deploy"))
    write_app(project.app, "2")
    second = release_of(project.ok("test", "deploy"))
    proc = project.ok("test", "rollback")
    assert f"rolled back test to {first}" in proc.stdout
    for h in project.hosts:
        assert project.current(h.name) == f"releases/{first}"
        assert project.served(h.name) == "<?php echo 'version 1';\n"
        states = {(e["release"], e["state"]) for e in project.log(h.name)}
        assert (second, "rolled back") in states
        assert not project.locked(h.name)
    # Nothing older than the first release: a clear failure, and nothing changes.
    proc = project.fab("test", "rollback")
    assert proc.returncode == 1
    assert "no complete release older than" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(project.current(h.name) == f"releases/{first}" for h in project.hosts)
    assert not any(project.locked(h.name) for h in project.hosts)


def test_rollback_to_a_named_release_and_forward_again(project):
    names = []
    for version in ("1", "2", "3"):
        write_app(project.app, version)
        names.append(release_of(project.ok("test", "deploy")))
    project.ok("test", "rollback", "--release", names[0])
    assert all(project.current(h.name) == f"releases/{names[0]}" for h in project.hosts)
    project.ok("test", "rollback", f"--release={names[2]}")
    assert all(project.served(h.name) == "<?php echo 'version 3';\n" for h in project.hosts)
    proc = project.fab("test", "rollback", "--release", "20000101T000000Z")
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_releases_lists_each_host_with_states_and_the_live_one(project):
    first = release_of(project.ok("test", "deploy"))
    write_app(project.app, "2")
    second = release_of(project.ok("test", "deploy"))
    out = project.ok("test", "releases").stdout
    for h in project.hosts:
        assert f"{h.name}:" in out
    assert re.search(rf"{second} \*\s+live", out)
    assert re.search(rf"{first}\s+complete", out)


def test_cleanup_keeps_keep_releases_complete_ones(project):
    project.config["keep_releases"] = 2
    names = []
    for version in "12345":
        write_app(project.app, version)
        names.append(release_of(project.ok("test", "deploy")))
    for h in project.hosts:
        assert project.releases(h.name) == names[-2:]
        assert project.current(h.name) == f"releases/{names[-1]}"


def test_cleanup_removes_failed_and_stale_releases_but_not_unknown_dirs(project):
    first = release_of(project.ok("test", "deploy"))
    host = project.hosts[0].name
    path = project.deploy_path(host)
    # A half-built release left by a killed deploy, and a directory we never made.
    (path / "releases" / "20000101T000000Z").mkdir()
    with (path / ".dep" / "releases.log").open("a") as log:
        log.write('{"release": "20000101T000000Z", "state": "building", "time": "x"}\n')
    (path / "releases" / "handmade").mkdir()
    # Rollback never selects the half-built release.
    assert project.fab("test", "rollback").returncode == 1
    write_app(project.app, "2")
    second = release_of(project.ok("test", "deploy"))
    assert project.releases(host) == sorted([first, second, "handmade"])


@pytest.mark.parametrize("mode", ["chmod", "acl", "chown", "skip"])
def test_writable_modes_make_the_shared_dir_writable_for_the_web_user(project, mode):
    import os
    import pwd
    import subprocess

    project.config.update(
        writable_mode=mode, http_user="www-data", writable_dirs=["storage", "storage/cache"]
    )
    project.ok("test", "deploy")
    www = pwd.getpwnam("www-data")
    for h in project.hosts:
        real = project.deploy_path(h.name) / "shared" / "storage"
        cache = real / "cache"
        assert cache.is_dir() == (mode != "skip")  # writable_dirs are created when missing
        st = os.stat(real)
        if mode == "chmod":
            assert st.st_mode & 0o070 == 0o070  # ug+rwX
        elif mode == "chown":
            assert st.st_uid == www.pw_uid
            assert os.stat(cache).st_uid == www.pw_uid
        elif mode == "acl":
            acl = subprocess.run(
                ["getfacl", "-p", str(real)], capture_output=True, text=True, check=True
            ).stdout
            assert "user:www-data:rwx" in acl
            assert "default:user:www-data:rwx" in acl
        else:
            assert st.st_mode & 0o020 == 0  # left as created
