"""A release's files, built from a commit of the LOCAL git repository.

Deployer's `update_code` clones on every server, so every server needs git, network access to
the remote and a deploy key. We export the commit here instead and upload plain files: the
servers need neither git nor credentials, every host gets byte-for-byte the same tree, and
uncommitted changes in the working copy can never leak into a release.

Also the versioning behind `fab tag-release`: semantic versions (`v1.2.3` or `1.2.3`) as
annotated tags, so a release records who tagged it, when, and why.

Every git call goes through `_git`: argv lists (never a shell), stdin closed, and a failure
becomes a `ConfigError` carrying git's own first line of complaint.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from .errors import AtomicDeployError, ConfigError

# What the data filter leaves unset we set ourselves, so the release's modes do not depend on
# the umask of whoever ran the deploy: php-fpm and nginx must be able to read every file.
DIR_MODE = 0o755
FILE_MODE = 0o644

_VERSION = re.compile(r"(v?)(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
BUMPS = ("patch", "minor", "major")

Version = tuple[int, int, int]


# --- running git ----------------------------------------------------------------------------


def _first_line(text: str) -> str:
    """git's most telling line: its first non-blank one (identity errors start with a blank)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "no output"


def _git(repo: Path, *args: str) -> str:
    """Run `git -C repo ARGS`, return stdout; any failure is the user's to fix: ConfigError."""
    argv = ["git", "-C", str(repo), *args]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed on this machine (needed for --revision)") from None
    if proc.returncode != 0:
        raise ConfigError(f"git {args[0]} failed in {repo}: {_first_line(proc.stderr)}")
    return proc.stdout


def _refuse_option(value: str, what: str) -> None:
    """A value starting with `-` would be read by git as an option: never pass one on."""
    if not value or value.startswith("-"):
        raise ConfigError(f"invalid git {what} {value!r}: must not be empty or start with '-'")


# --- finding the commit ---------------------------------------------------------------------


def repo_root(path: Path) -> Path:
    """The top of the git work tree holding `path` (git prints it with symlinks resolved)."""
    argv = ["git", "-C", str(path), "rev-parse", "--show-toplevel"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed on this machine (needed for --revision)") from None
    top = proc.stdout.strip()
    if proc.returncode != 0 or not top:
        reason = _first_line(proc.stderr) if proc.stderr.strip() else "not in a work tree"
        raise ConfigError(f"{path} is not inside a git work tree: {reason}")
    return Path(top)


def resolve(repo: Path, ref: str) -> str:
    """The full commit id `ref` names, computed once so every host gets the same commit.

    `--end-of-options` stops git from reading the ref as an option; we also refuse a leading
    `-` ourselves, so a hostile or mistyped `--revision=--output=x` never reaches git at all.
    """
    _refuse_option(ref, "ref")
    argv = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
    try:
        out = _git(repo, *argv)
    except ConfigError:
        raise ConfigError(f"unknown git ref {ref!r}: no such commit in {repo}") from None
    commit = out.strip()
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        raise ConfigError(f"git rev-parse gave {commit!r} for {ref!r}, not a commit id")
    return commit


# --- exporting its tree ---------------------------------------------------------------------


def _clean_subdir(subdir: str) -> str:
    """`subdir` as git spells a path in a tree: relative, `/`-separated, no `.` or `..`."""
    path = PurePosixPath(subdir.replace(os.sep, "/")) if subdir else PurePosixPath()
    if path.is_absolute() or ".." in path.parts:
        raise ConfigError(f"source directory {subdir!r} must be a path inside the repository")
    return "/".join(part for part in path.parts if part != ".")


def _extraction_filter(prefix: str) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's `data` filter, plus: strip `prefix/`, and fixed directory modes.

    The data filter refuses absolute names, `..`, device files and links that point outside
    the destination (a release that reaches outside itself is not atomic), and keeps the
    executable bits of regular files.
    """

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if prefix:
            if member.name == prefix:
                return None  # the subdirectory itself is `dest`
            if not member.name.startswith(prefix + "/"):
                return None
            member = member.replace(name=member.name[len(prefix) + 1 :], deep=False)
        filtered = tarfile.data_filter(member, dest)
        if filtered is not None and filtered.isdir():
            filtered = filtered.replace(mode=DIR_MODE, deep=False)
        return filtered

    return keep


def archive(repo: Path, commit: str, subdir: str, dest: Path, *, bare: bool = False) -> None:
    """Write the tree of `commit` (only `subdir`, "" for all) into the empty directory `dest`.

    Uses `git archive <commit> -- <subdir>` rather than `<commit>:<subdir>`: archiving a
    sub-tree makes git read only the `.gitattributes` inside it, so an `export-ignore` set at
    the repository's top would be silently ignored. The archive goes through a temporary file
    (memory stays flat for a big tree) and is unpacked with tarfile's `data` filter. Modes of
    regular files (the executable bit) and symlinks are preserved. Finally `REVISION` holds
    the full commit id, so a release on a host says what it was built from.
    """
    # git archive in a subdirectory would archive only that directory; a bare mirror has none.
    root = repo if bare else repo_root(repo)
    commit = resolve(root, commit)
    prefix = _clean_subdir(subdir)
    if prefix:
        try:
            kind = _git(root, "cat-file", "-t", f"{commit}:{prefix}").strip()
        except ConfigError:
            kind = "missing"
        if kind != "tree":
            raise ConfigError(f"{prefix!r} is not a directory in commit {commit[:12]}")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ConfigError(f"refusing to export into {dest}: the directory is not empty")

    with tempfile.TemporaryDirectory(prefix="atomicdeploy-tar-") as scratch:
        tar_path = Path(scratch) / "tree.tar"
        # A fixed tar.umask: modes must not depend on the user's git config either.
        args = ["-c", "tar.umask=0022", "--literal-pathspecs", "archive", "--format=tar"]
        args += ["--output", str(tar_path), commit]
        if prefix:
            args += ["--", prefix]
        _git(root, *args)
        try:
            with tarfile.open(tar_path, mode="r:") as tar:
                tar.extractall(dest, filter=_extraction_filter(prefix))
        except tarfile.FilterError as exc:
            raise ConfigError(f"refusing to export commit {commit[:12]}: {exc}") from exc
        except (OSError, tarfile.TarError) as exc:
            raise AtomicDeployError(
                f"could not export commit {commit[:12]} into {dest}: {exc}"
            ) from exc

    revision = dest / "REVISION"
    if revision.is_symlink():
        revision.unlink()  # a tracked link named REVISION must not redirect our write
    revision.write_text(commit + "\n", encoding="ascii")
    revision.chmod(FILE_MODE)


@contextmanager
def exported(repo_dir: Path, source_dir: Path, ref: str) -> Iterator[tuple[str, Path]]:
    """Yield `(commit, directory)`: `source_dir` as it is in `ref`, exported to a temp dir.

    `source_dir` (relative paths are taken from `repo_dir`) must lie inside the repository;
    the same sub-directory of the commit is exported. The temp dir is removed afterwards,
    whatever happened.
    """
    root = repo_root(repo_dir)
    commit = resolve(root, ref)
    wanted = (repo_dir / source_dir).resolve()
    try:
        subdir = wanted.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ConfigError(
            f"source directory {wanted} is not inside the git repository {root}"
        ) from None
    subdir = "" if subdir == "." else subdir
    with private_tree() as tree:
        archive(root, commit, subdir, tree)
        yield commit, tree


@contextmanager
def private_tree() -> Iterator[Path]:
    """An empty directory to export a commit into, removed afterwards, whatever happened.

    It lies in a directory of its own that mkdtemp makes 0700: other users of this machine
    cannot read the source (and whatever config it carries) while it is uploaded. The tree
    itself is 0755, because `rsync --archive tree/` gives the release that mode and nginx
    must read the site.
    """
    private = Path(tempfile.mkdtemp(prefix="atomicdeploy-src-"))
    try:
        tree = private / "tree"
        tree.mkdir(mode=DIR_MODE)
        tree.chmod(DIR_MODE)  # whatever the umask
        yield tree
    finally:
        # Never let a failing clean-up hide the error that brought us here.
        shutil.rmtree(private, ignore_errors=True)


# --- versions and tags ----------------------------------------------------------------------


def parse_version(tag: str) -> Version | None:
    """`v1.2.3` or `1.2.3` as `(1, 2, 3)`; anything else (pre-releases too) is not a version."""
    match = _VERSION.fullmatch(tag)
    if not match:
        return None
    return int(match[2]), int(match[3]), int(match[4])


def _latest(tags: Iterable[str]) -> tuple[Version, str] | None:
    """The highest version tag and its name; `v1.2.3` wins a tie with `1.2.3`."""
    found = [
        (version, tag.startswith("v"), tag)
        for tag in tags
        if (version := parse_version(tag)) is not None
    ]
    if not found:
        return None
    version, _, tag = max(found)
    return version, tag


def next_version(tags: Iterable[str], bump: str = "patch") -> str:
    """The tag after the highest version among `tags`, in that tag's `v` or no-`v` style.

    With no version tag yet, the first release is `v0.1.0` (a `patch` or `minor` bump: a
    project's first version is a minor one by semver's convention) or `v1.0.0` (`major`).
    Other tags (`latest`, `v2.0.0-rc1`, `deploy-42`) are ignored.
    """
    if bump not in BUMPS:
        raise ConfigError(f"bump must be one of {', '.join(BUMPS)}, not {bump!r}")
    latest = _latest(tags)
    if latest is None:
        return "v1.0.0" if bump == "major" else "v0.1.0"
    (major, minor, patch), tag = latest
    if bump == "major":
        major, minor, patch = major + 1, 0, 0
    elif bump == "minor":
        minor, patch = minor + 1, 0
    else:
        patch += 1
    prefix = "v" if tag.startswith("v") else ""
    return f"{prefix}{major}.{minor}.{patch}"


def _tags(repo: Path) -> list[str]:
    return _git(repo, "tag", "--list").split()


def tag_of(repo: Path, commit: str) -> str | None:
    """The version tag on exactly `commit` (the highest if several), or None."""
    _refuse_option(commit, "commit")
    names = _git(repo, "tag", "--list", f"--points-at={commit}").split()
    latest = _latest(names)
    return latest[1] if latest else None


def tag_release(
    repo: Path,
    *,
    ref: str = "HEAD",
    bump: str = "patch",
    version: str | None = None,
    message: str | None = None,
) -> str:
    """Create an annotated tag for `ref` and return its name.

    The name is `version` if given, else the next version after the highest existing one.
    Refused: a name that is not a version, a version that already exists (as `v1.2.3` or
    `1.2.3`), and a commit that already carries a version tag, so re-running `tag-release`
    cannot give one commit two versions. Annotated, so the tag records who made it and when.
    """
    commit = resolve(repo, ref)
    existing = _tags(repo)
    if version is None:
        name = next_version(existing, bump)
    else:
        if parse_version(version) is None:
            raise ConfigError(f"version {version!r} is not of the form v1.2.3 or 1.2.3")
        name = version
    taken = [tag for tag in existing if parse_version(tag) == parse_version(name)]
    if taken:
        raise ConfigError(f"tag {taken[0]} already exists: versions are never re-used")
    already = tag_of(repo, commit)
    if already is not None:
        raise ConfigError(f"commit {commit[:12]} is already released as {already}")
    _git(repo, "tag", "-a", name, "-m", message or f"Release {name}", commit)
    return name
