"""A release from `repository:`: a mirror kept on the controller, fetched at each deploy.

Deployer clones on every server, so every server needs git, the network path to the remote
and a deploy key. Here the controller keeps one mirror per repository in its cache directory
(`$XDG_CACHE_HOME/atomicdeploy/`, else `~/.cache/atomicdeploy/`), fetches what is new, and
exports the chosen commit with `git archive`: hosts need neither git nor credentials. Two
deploys from one controller share a mirror under a file lock; a fetch never prompts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from . import gitsource
from .errors import AtomicDeployError, ConfigError
from .secrets import redact_url_passwords

# Git must never wait for a password on a terminal nobody watches (a CI job).
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "atomicdeploy"


def _mirror_path(url: str) -> Path:
    """One directory per repository URL: a readable tail and a hash of the whole URL."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir() / "mirrors" / f"{tail}-{digest}.git"


def _run_git(args: list[str], url: str, cwd: Path | None = None) -> str:
    """git with the URL's password hidden from every message we make of its output."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **_GIT_ENV},
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed on this machine (needed for repository)") from None
    if proc.returncode != 0:
        shown = redact_url_passwords(url)
        why = redact_url_passwords(gitsource._first_line(proc.stderr)).replace(url, shown)
        raise AtomicDeployError(f"repository {shown}: git {args[0]} failed: {why}", step="fetch")
    return proc.stdout


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(url: str) -> tuple[Path, bool]:
    """The mirror of `url`, up to date; whether it was created (else only what is new came).

    A first fetch clones into a temporary name and renames it, so an interrupted clone
    never leaves a half mirror behind."""
    if url.startswith("-"):
        raise ConfigError(f"repository {url!r} must not start with '-'")
    mirror = _mirror_path(url)
    with locked(mirror):
        if (mirror / "HEAD").exists():
            _run_git(["-c", "gc.auto=0", "fetch", "--prune", "--quiet", "origin"], url, mirror)
            return mirror, False
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=mirror.parent))
        try:
            _run_git(["clone", "--mirror", "--quiet", "--", url, str(tmp / "m.git")], url)
            (tmp / "m.git").rename(mirror)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return mirror, True


def choose(mirror: Path, branch: str, revision: str) -> str:
    """The commit to deploy: `revision` (a branch, tag or commit), else the tip of `branch`,
    else of the remote's default branch."""
    if revision:
        return gitsource.resolve(mirror, revision)
    if branch:
        gitsource._refuse_option(branch, "branch")
        try:
            return gitsource.resolve(mirror, f"refs/heads/{branch}")
        except ConfigError:
            raise ConfigError(f"branch {branch!r} is not in the repository") from None
    return gitsource.resolve(mirror, "HEAD")


@contextlib.contextmanager
def exported(
    url: str, branch: str, revision: str, subdir: str, say: Callable[[str], None]
) -> Iterator[tuple[str, Path, str]]:
    """Yield `(commit, tree, version tag)`: `subdir` of the chosen commit, exported into a
    private temporary directory (0700, the tree 0755), removed afterwards."""
    mirror, created = fetch(url)
    commit = choose(mirror, branch, revision)
    what = "cloned" if created else "fetched"
    say(f"repository {redact_url_passwords(url)}: {what}; deploying commit {commit[:12]}")
    with gitsource.private_tree() as tree:
        gitsource.archive(mirror, commit, subdir, tree, bare=True)
        yield commit, tree, gitsource.tag_of(mirror, commit) or ""
