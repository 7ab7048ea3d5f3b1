"""`repository:` and `build:` on real hosts: a bare repository made here (two branches, a
tag, several commits), deployed from a project directory that is not a clone; the build runs
once on this machine and its output reaches every host.

The controller's cache (mirror and builds) lives in the test's own XDG_CACHE_HOME.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    env = {**GIT_ENV, "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return proc.stdout.strip()


def commit(work: Path, version: str, message: str) -> str:
    (work / "public").mkdir(exist_ok=True)
    (work / "public" / "index.php").write_text(f"<?php echo 'version {version}';\n")
    (work / "composer.json").write_text("{}\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path) -> dict:
    """origin.git: main (c1 tagged v1.0.0, c2) and feature (c1 + f1)."""
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "main")
    c1 = commit(work, "1", "one")
    git(work, "tag", "-a", "v1.0.0", "-m", "Release v1.0.0")
    c2 = commit(work, "2", "two")
    git(work, "checkout", "-q", "-b", "feature", c1)
    f1 = commit(work, "F", "feature")
    git(work, "push", "-q", "origin", "main", "feature", "--tags")
    git(work, "checkout", "-q", "main")
    return {"bare": bare, "work": work, "c1": c1, "c2": c2, "f1": f1}


@pytest.fixture
def repo_project(project: Project, origin, tmp_path) -> Project:
    project.config.update(repository=str(origin["bare"]), source=".")
    project.config.pop("writable_dirs")
    project.config["shared_dirs"] = []
    project.config["shared_files"] = []
    project.cache = tmp_path / "cache"
    return project


def fab(project: Project, *args: str):
    return project.fab(*args, env={"XDG_CACHE_HOME": str(project.cache)})


def ok(project: Project, *args: str):
    proc = fab(project, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def served(project: Project) -> set[str]:
    return {project.served(h.name) for h in project.hosts}


def test_deploy_by_default_branch_branch_tag_and_commit(repo_project, origin):
    p = repo_project
    first = ok(p, "test", "deploy")
    assert "cloned; deploying commit " + origin["c2"][:12] in first.stdout
    assert served(p) == {"<?php echo 'version 2';\n"}
    assert (p.deploy_path("web1") / "current" / "REVISION").read_text() == origin["c2"] + "\n"
    feature = ok(p, "test", "deploy", "--branch", "feature")
    assert served(p) == {"<?php echo 'version F';\n"}, feature.stdout
    tagged = ok(p, "test", "deploy", "--revision", "v1.0.0")
    assert served(p) == {"<?php echo 'version 1';\n"}
    assert re.search(r"deployed \S+-v1\.0\.0 to", tagged.stdout)
    ok(p, "test", "deploy", "--revision", origin["f1"])
    assert served(p) == {"<?php echo 'version F';\n"}
    assert not (p.dir / ".git").exists()  # the project is no clone


def test_a_second_deploy_fetches_what_is_new_into_the_same_mirror(repo_project, origin):
    p = repo_project
    ok(p, "test", "deploy")
    (mirror,) = (p.cache / "atomicdeploy" / "mirrors").glob("*.git")
    old_objects = {f for f in (mirror / "objects").rglob("*") if f.is_file()}
    c3 = commit(origin["work"], "3", "three")
    git(origin["work"], "push", "-q", "origin", "main")
    again = ok(p, "test", "deploy")
    assert f"fetched; deploying commit {c3[:12]}" in again.stdout
    assert served(p) == {"<?php echo 'version 3';\n"}
    assert old_objects <= {f for f in (mirror / "objects").rglob("*") if f.is_file()}


def test_a_failed_fetch_is_one_line_with_the_password_masked_and_no_host_touched(repo_project):
    p = repo_project
    p.config["repository"] = "http://deploy:s3cretpw@127.0.0.1:9/nothing.git"
    proc = fab(p, "test", "deploy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "s3cretpw" not in proc.stdout + proc.stderr
    assert "repository http://deploy:***@127.0.0.1:9/nothing.git: git clone failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not p.srv.exists() and not p.known_hosts.exists()


def test_the_build_runs_once_and_its_output_reaches_every_host(repo_project, tmp_path):
    p = repo_project
    runs = tmp_path / "build-runs"
    p.config["build"] = [
        f"echo built >> {runs}",
        "COMPOSER_ALLOW_SUPERUSER=1 COMPOSER_HOME=$PWD/.composer-home composer install"
        " --no-dev --no-interaction --optimize-autoloader",
        "rm -rf .composer-home && echo artefact > built.txt",
    ]
    # With build:, the composer recipe does not run on the hosts (this one would fail there).
    p.config.update(recipes=["composer"], composer="/bin/false")
    proc = ok(p, "test", "deploy")
    assert runs.read_text() == "built\n"  # once for the three hosts
    assert "[build] " in proc.stdout
    for h in p.hosts:
        current = p.deploy_path(h.name) / "current"
        assert (current / "vendor" / "autoload.php").is_file()
        assert (current / "built.txt").read_text() == "artefact\n"
    again = ok(p, "test", "deploy", "--force")
    assert "build: reusing the tree built from this commit" in again.stdout
    assert runs.read_text() == "built\n"
    ok(p, "test", "deploy", "--force", "--rebuild")
    assert runs.read_text() == "built\nbuilt\n"


def test_a_failing_build_names_the_command_and_touches_no_host(repo_project):
    p = repo_project
    p.config["build"] = ["echo start", "exit 7"]
    proc = fab(p, "test", "deploy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[build] start" in proc.stdout
    assert "build command 'exit 7' failed (exit 7): no host was touched" in proc.stderr
    assert not p.srv.exists() and not p.known_hosts.exists()


def test_a_build_of_a_plain_directory_never_changes_the_users_files(project, tmp_path):
    project.config["build"] = ["echo made > made.txt"]
    project.ok("test", "deploy")
    assert not (project.app / "made.txt").exists()
    assert project.served("web1", "made.txt") == "made\n"


def test_placeholders_expand_with_hostile_paths_on_real_hosts(project, tmp_path):
    odd = "it's a $(touch pwned) `x` dir"
    for h in project.hosts:
        project.overrides[h.name] = {"deploy_path": str(project.srv / h.name / odd / "app")}
    project.config["hooks"] = {
        "after_switch": [
            "printf '%s\\n' {{release_path}} {{release_name}} {{previous_release}}"
            " {{current_path}} {{deploy_path}} > {{deploy_path}}/seen.txt"
        ]
    }
    first = re.search(r"deployed (\S+) to", project.ok("test", "deploy").stdout).group(1)
    second = re.search(r"deployed (\S+) to", project.ok("test", "deploy").stdout).group(1)
    for h in project.hosts:
        base = project.deploy_path(h.name)
        assert (base / "seen.txt").read_text().splitlines() == [
            f"{base}/releases/{second}",
            second,
            first,
            f"{base}/current",
            str(base),
        ]
    assert not list(tmp_path.rglob("pwned")) and not (project.dir / "pwned").exists()
