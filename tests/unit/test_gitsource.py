"""Releases built from the local git repository, and the versions `fab tag-release` makes.

Every test builds its own repository in a temp dir; the machine's and the user's git config are
kept out (GIT_CONFIG_NOSYSTEM, HOME), so the results do not depend on who runs them.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from atomicdeploy import gitsource
from atomicdeploy.errors import ConfigError
from atomicdeploy.gitsource import (
    archive,
    exported,
    next_version,
    parse_version,
    repo_root,
    resolve,
    tag_of,
    tag_release,
)


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return proc.stdout.strip()


def commit_all(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES"):
        monkeypatch.delenv(name, raising=False)
    # An annotated tag needs a tagger identity; HOME no longer provides one.
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    # Keep git from walking up into a repository that happens to contain the temp dir.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with two commits: `index.php` says v1, then v2."""
    root = tmp_path / "app"
    root.mkdir()
    git(root, "init", "-q")
    write(root / "index.php", "<?php echo 'v1';\n")
    commit_all(root, "first")
    write(root / "index.php", "<?php echo 'v2';\n")
    commit_all(root, "second")
    return root


def export(repo: Path, ref: str, subdir: str = "") -> Path:
    dest = Path(tempfile.mkdtemp(prefix="gitsource-test-", dir=repo.parent))
    archive(repo, ref, subdir, dest)
    return dest


# --- finding the repository and the commit --------------------------------------------------


def test_repo_root_is_found_from_a_subdirectory(repo: Path) -> None:
    (repo / "public").mkdir()
    assert repo_root(repo / "public") == repo.resolve()


def test_a_directory_outside_any_repository_is_a_usage_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="not inside a git work tree") as exc:
        repo_root(plain)
    assert exc.value.exit_code == 2
    assert "\n" not in str(exc.value)


def test_missing_git_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="git is not installed"):
        repo_root(tmp_path)


def test_resolve_gives_the_full_commit_id(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert resolve(repo, "HEAD") == head
    assert resolve(repo, head[:8]) == head
    assert resolve(repo, "HEAD~1") == git(repo, "rev-parse", "HEAD~1")


def test_an_annotated_tag_resolves_to_its_commit(repo: Path) -> None:
    git(repo, "tag", "-a", "v1.0.0", "-m", "one")
    assert resolve(repo, "v1.0.0") == git(repo, "rev-parse", "HEAD")


def test_an_unknown_ref_is_a_usage_error_naming_it(repo: Path) -> None:
    with pytest.raises(ConfigError, match="unknown git ref 'no-such-branch'"):
        resolve(repo, "no-such-branch")


@pytest.mark.parametrize("ref", ["-x", "--output=/tmp/pwned", ""])
def test_a_ref_that_git_would_read_as_an_option_is_refused(repo: Path, ref: str) -> None:
    with pytest.raises(ConfigError, match="must not be empty or start with '-'"):
        resolve(repo, ref)


# --- exporting a commit ---------------------------------------------------------------------


def test_archive_of_head_has_heads_content_and_a_revision_file(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    dest = export(repo, "HEAD")
    assert (dest / "index.php").read_text() == "<?php echo 'v2';\n"
    assert (dest / "REVISION").read_text() == head + "\n"
    assert sorted(p.name for p in dest.iterdir()) == ["REVISION", "index.php"]


def test_archive_of_an_older_commit_has_that_commits_content(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD~1")
    dest = export(repo, first[:10])
    assert (dest / "index.php").read_text() == "<?php echo 'v1';\n"
    assert (dest / "REVISION").read_text() == first + "\n"


def test_uncommitted_changes_are_not_in_the_release(repo: Path) -> None:
    write(repo / "index.php", "<?php echo 'dirty';\n")
    write(repo / "untracked.php", "<?php\n")
    write(repo / "staged.php", "<?php\n")
    git(repo, "add", "staged.php")
    dest = export(repo, "HEAD")
    assert (dest / "index.php").read_text() == "<?php echo 'v2';\n"
    assert not (dest / "untracked.php").exists()
    assert not (dest / "staged.php").exists()


def test_a_subdirectory_is_exported_as_the_release_root(repo: Path) -> None:
    write(repo / "site" / "public" / "index.php", "<?php echo 'site';\n")
    write(repo / "site" / "composer.json", "{}\n")
    write(repo / "docs" / "README.md", "docs\n")
    commit_all(repo)
    dest = export(repo, "HEAD", "site")
    assert sorted(p.name for p in dest.iterdir()) == ["REVISION", "composer.json", "public"]
    assert (dest / "public" / "index.php").read_text() == "<?php echo 'site';\n"
    assert export(repo, "HEAD", "./site/").joinpath("composer.json").is_file()


def test_a_subdirectory_missing_from_the_commit_is_a_usage_error(repo: Path) -> None:
    (repo / "site").mkdir()  # in the working copy, but never committed
    with pytest.raises(ConfigError, match=re.escape("'site' is not a directory")):
        export(repo, "HEAD", "site")
    with pytest.raises(ConfigError, match=re.escape("'index.php' is not a directory")):
        export(repo, "HEAD", "index.php")


@pytest.mark.parametrize("subdir", ["../elsewhere", "/etc"])
def test_a_subdirectory_outside_the_repository_is_refused(repo: Path, subdir: str) -> None:
    with pytest.raises(ConfigError, match="must be a path inside the repository"):
        export(repo, "HEAD", subdir)


def test_executable_bits_and_symlinks_are_preserved(repo: Path) -> None:
    script = write(repo / "bin" / "console", "#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    os.symlink("bin/console", repo / "console")
    os.symlink("bin", repo / "tools")
    commit_all(repo)
    dest = export(repo, "HEAD")
    assert stat.S_IMODE((dest / "bin" / "console").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "index.php").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "bin").stat().st_mode) == 0o755
    assert os.readlink(dest / "console") == "bin/console"
    assert os.readlink(dest / "tools") == "bin"
    assert (dest / "tools" / "console").read_text() == "#!/bin/sh\necho hi\n"


def test_a_symlink_leaving_the_release_is_refused(repo: Path) -> None:
    os.symlink("/etc/passwd", repo / "passwd")
    commit_all(repo)
    with pytest.raises(ConfigError, match="refusing to export commit"):
        export(repo, "HEAD")


def test_export_ignore_is_honoured_from_the_top_and_from_the_subdirectory(repo: Path) -> None:
    write(repo / ".gitattributes", "site/tests export-ignore\n*.md export-ignore\n")
    write(repo / "site" / ".gitattributes", "phpunit.xml export-ignore\n")
    write(repo / "site" / "tests" / "FooTest.php", "<?php\n")
    write(repo / "site" / "phpunit.xml", "<phpunit/>\n")
    write(repo / "site" / "NOTES.md", "notes\n")
    write(repo / "site" / "index.php", "<?php\n")
    commit_all(repo)
    whole = export(repo, "HEAD")
    assert (whole / "site" / "index.php").is_file()
    assert not (whole / "site" / "tests").exists()
    assert not (whole / "site" / "phpunit.xml").exists()
    assert not (whole / "site" / "NOTES.md").exists()
    site = export(repo, "HEAD", "site")
    assert sorted(p.name for p in site.iterdir()) == [".gitattributes", "REVISION", "index.php"]


def test_archive_refuses_a_directory_that_is_not_empty(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "busy"
    write(dest / "old.php", "x")
    with pytest.raises(ConfigError, match="not empty"):
        archive(repo, "HEAD", "", dest)


def test_exported_yields_the_commit_and_removes_its_temp_dir(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    with exported(repo, repo, "HEAD") as (commit, tree):
        assert commit == head
        assert tree.parent.name.startswith("atomicdeploy-src-")
        assert stat.S_IMODE(tree.stat().st_mode) == 0o755  # rsync -a copies it to the release
        # ...inside a directory only we can enter: other local users cannot read the source.
        assert stat.S_IMODE(tree.parent.stat().st_mode) == 0o700
        assert (tree / "index.php").read_text() == "<?php echo 'v2';\n"
    assert not tree.exists() and not tree.parent.exists()


def test_exported_removes_its_temp_dir_when_the_body_fails(repo: Path) -> None:
    with pytest.raises(RuntimeError), exported(repo, repo, "HEAD") as (_, tree):
        raise RuntimeError("upload failed")
    assert not tree.exists()


def test_exported_removes_its_temp_dir_when_the_export_fails(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args: object, **kwargs: object) -> str:
        made.append(real_mkdtemp(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(gitsource.tempfile, "mkdtemp", spy)
    os.symlink("/etc/passwd", repo / "passwd")
    commit_all(repo)
    with pytest.raises(ConfigError), exported(repo, repo, "HEAD"):
        pass
    assert made and not Path(made[0]).exists()


def test_exported_exports_the_source_subdirectory(repo: Path) -> None:
    write(repo / "site" / "index.php", "<?php echo 'site';\n")
    commit_all(repo)
    with exported(repo, repo / "site", "HEAD") as (_, tree):
        assert sorted(p.name for p in tree.iterdir()) == ["REVISION", "index.php"]
    with exported(repo / "site", Path("."), "HEAD") as (_, tree):
        assert sorted(p.name for p in tree.iterdir()) == ["REVISION", "index.php"]


def test_exported_refuses_a_source_outside_the_repository(repo: Path, tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="not inside the git repository"),
        exported(repo, tmp_path, "HEAD"),
    ):
        pass


def test_exported_refuses_an_unknown_ref_before_making_a_temp_dir(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitsource.tempfile, "mkdtemp", pytest.fail)
    with pytest.raises(ConfigError, match="unknown git ref"), exported(repo, repo, "nope"):
        pass


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("v1.2.3", (1, 2, 3)),
        ("1.2.3", (1, 2, 3)),
        ("v0.0.0", (0, 0, 0)),
        ("v10.20.30", (10, 20, 30)),
        ("v1.2.3-rc1", None),
        ("v1.2.3+build", None),
        ("V1.2.3", None),
        ("v1.2", None),
        ("v01.2.3", None),
        ("release-1.2.3", None),
        ("v1.2.3\n", None),
        ("v١.2.3", None),  # an Arabic-Indic digit: \d would take it
        ("", None),
    ],
)
def test_parse_version(tag: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(tag) == version


@pytest.mark.parametrize(
    ("tags", "bump", "expected"),
    [
        ([], "patch", "v0.1.0"),
        ([], "minor", "v0.1.0"),
        ([], "major", "v1.0.0"),
        (["latest", "deploy-42", "v2.0.0-rc1"], "patch", "v0.1.0"),
        (["v1.2.3"], "patch", "v1.2.4"),
        (["v1.2.3"], "minor", "v1.3.0"),
        (["v1.2.3"], "major", "v2.0.0"),
        (["v1.9.0", "v1.10.0", "v1.2.3"], "patch", "v1.10.1"),  # numeric, not string, order
        (["v1.0.0", "1.1.0"], "patch", "1.1.1"),  # the style of the highest tag
        (["1.0.0", "v0.9.0"], "minor", "1.1.0"),
        (["1.2.3", "v1.2.3"], "patch", "v1.2.4"),
        (["v1.2.3", "v2.0.0-rc1", "stable"], "patch", "v1.2.4"),
    ],
)
def test_next_version(tags: list[str], bump: str, expected: str) -> None:
    assert next_version(tags, bump) == expected


def test_next_version_refuses_an_unknown_bump() -> None:
    with pytest.raises(ConfigError, match="bump must be one of patch, minor, major"):
        next_version(["v1.0.0"], "huge")


# --- tags -----------------------------------------------------------------------------------


def test_tag_release_creates_an_annotated_tag_on_the_commit(repo: Path) -> None:
    git(repo, "tag", "-a", "v1.2.3", "-m", "old", "HEAD~1")
    assert tag_release(repo) == "v1.2.4"
    assert git(repo, "cat-file", "-t", "v1.2.4") == "tag"
    assert git(repo, "rev-parse", "v1.2.4^{commit}") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "tag", "-l", "--format=%(contents:subject)", "v1.2.4") == "Release v1.2.4"


def test_tag_release_of_a_first_release_with_a_bump_ref_and_message(repo: Path) -> None:
    assert tag_release(repo, ref="HEAD~1", bump="minor", message="First cut") == "v0.1.0"
    assert git(repo, "rev-parse", "v0.1.0^{commit}") == git(repo, "rev-parse", "HEAD~1")
    assert git(repo, "tag", "-l", "--format=%(contents:subject)", "v0.1.0") == "First cut"


def test_tag_release_with_an_explicit_version(repo: Path) -> None:
    assert tag_release(repo, version="2.0.0") == "2.0.0"
    assert git(repo, "cat-file", "-t", "2.0.0") == "tag"


@pytest.mark.parametrize("version", ["v1.2.3", "1.2.3"])
def test_tag_release_refuses_an_existing_version(repo: Path, version: str) -> None:
    git(repo, "tag", "-a", "v1.2.3", "-m", "old", "HEAD~1")
    with pytest.raises(ConfigError, match=re.escape("tag v1.2.3 already exists")):
        tag_release(repo, version=version)


def test_tag_release_refuses_a_commit_that_is_already_released(repo: Path) -> None:
    assert tag_release(repo) == "v0.1.0"
    with pytest.raises(ConfigError, match=re.escape("already released as v0.1.0")):
        tag_release(repo)
    assert git(repo, "tag", "--list") == "v0.1.0"


@pytest.mark.parametrize("version", ["--force", "v1.2", "next", "v1.2.3-rc1"])
def test_tag_release_refuses_a_version_that_is_not_one(repo: Path, version: str) -> None:
    with pytest.raises(ConfigError, match="is not of the form"):
        tag_release(repo, version=version)
    assert git(repo, "tag", "--list") == ""


def test_tag_of_finds_the_highest_version_tag_on_exactly_that_commit(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    first = git(repo, "rev-parse", "HEAD~1")
    assert tag_of(repo, head) is None
    git(repo, "tag", "-a", "v1.0.0", "-m", "x", first)
    assert tag_of(repo, head) is None  # an older commit's tag does not count
    git(repo, "tag", "latest", head)  # lightweight, not a version
    git(repo, "tag", "-a", "v1.1.0", "-m", "x", head)
    git(repo, "tag", "-a", "v1.10.0", "-m", "x", head)
    git(repo, "tag", "-a", "v2.0.0-rc1", "-m", "x", head)
    assert tag_of(repo, head) == "v1.10.0"
    assert tag_of(repo, first) == "v1.0.0"


def test_tag_of_refuses_an_option_for_a_commit(repo: Path) -> None:
    with pytest.raises(ConfigError):
        tag_of(repo, "-x")
