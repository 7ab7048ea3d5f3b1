"""The controller's mirror of `repository:`: shared safely by deploys started at once, and a
commit chosen by branch, tag, commit or the remote's default branch. No hosts."""

from __future__ import annotations

import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from atomicdeploy import repository
from atomicdeploy.errors import AtomicDeployError, ConfigError

ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> str:
    env = {**ENV, "HOME": str(cwd)}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return out.stdout.decode().strip()


@pytest.fixture
def origin(tmp_path, monkeypatch) -> tuple[Path, str, str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "trunk")
    (work / "a").write_text("1")
    git(work, "add", "a")
    git(work, "commit", "-q", "-m", "one")
    first = git(work, "rev-parse", "HEAD")
    git(work, "tag", "v1.0.0")
    (work / "a").write_text("2")
    git(work, "commit", "-q", "-am", "two")
    git(work, "push", "-q", "origin", "trunk", "--tags")
    return bare, first, git(work, "rev-parse", "HEAD")


def _fetch(url: str) -> str:
    return str(repository.fetch(url)[0])


def test_deploys_started_at_once_share_one_mirror(origin):
    bare = str(origin[0])
    with ProcessPoolExecutor(4) as pool:
        mirrors = set(pool.map(_fetch, [bare] * 4))
    assert len(mirrors) == 1
    (mirror,) = mirrors
    assert (Path(mirror) / "HEAD").exists()
    assert not list(Path(mirror).parent.glob(".clone-*"))  # no half clone left


def test_the_commit_by_default_branch_branch_tag_and_commit(origin):
    bare, first, second = origin
    mirror, created = repository.fetch(str(bare))
    assert created and not repository.fetch(str(bare))[1]
    assert repository.choose(mirror, "", "") == second  # the remote's default: trunk
    assert repository.choose(mirror, "trunk", "") == second
    assert repository.choose(mirror, "", "v1.0.0") == first
    assert repository.choose(mirror, "trunk", first[:10]) == first
    with pytest.raises(ConfigError, match="branch 'nope' is not in the repository"):
        repository.choose(mirror, "nope", "")
    with pytest.raises(ConfigError, match="must not be empty or start with '-'"):
        repository.choose(mirror, "--upload-pack=x", "")


def test_a_failed_clone_names_the_repository_with_its_password_masked(origin):
    with pytest.raises(AtomicDeployError) as err:
        repository.fetch("http://me:hunter2@127.0.0.1:9/x.git")
    assert "hunter2" not in str(err.value)
    assert err.value.message.startswith(
        "repository http://me:***@127.0.0.1:9/x.git: git clone failed"
    )
