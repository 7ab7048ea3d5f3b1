"""`build:`: the release's build (composer, npm) run once, on the controller, before any host
is locked; every host then gets the built tree.

Deployer runs `deploy:vendors` on every server: each one needs composer, network access to
the package registries, and the CPU to build; ten hosts build ten times, and a registry
hiccup on one of them fails the deploy halfway. Here the build runs once in the exported
tree, its output streamed with a `[build]` prefix; a failure stops the deploy with the
command and its exit status, and no host is touched. A built commit is kept in the cache, so
deploying the same commit with the same commands again reuses it (`--rebuild` builds again).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import repository
from .errors import AtomicDeployError
from .inventory.refs import fill_runtime

KEEP_BUILDS = 3  # built trees kept in the cache, newest first


def build_key(origin: str, commit: str, subdir: str, commands: Sequence[str]) -> str:
    """What a built tree depends on: where it came from, the commit, and the commands."""
    text = "\0".join((origin, commit, subdir, *commands))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def command_text(command: str, tree: Path) -> str:
    """`{{release_path}}` in a build command is the tree being built; the other per-deploy
    placeholders are not known yet when the build runs."""
    return fill_runtime(command, {"release_path": str(tree)}, "build")


def run_commands(tree: Path, commands: Sequence[str], say: Callable[[str], None]) -> None:
    """Each command with `sh -c` in `tree`, stdout and stderr together, line by line."""
    for command in commands:
        text = command_text(command, tree)
        proc = subprocess.Popen(
            ["sh", "-c", text],
            cwd=tree,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            say(f"[build] {line.rstrip()}")
        status = proc.wait()
        if status:
            raise AtomicDeployError(
                f"build command {command!r} failed (exit {status}): no host was touched",
                step="build",
            )


def _prune(builds: Path, keep: int = KEEP_BUILDS) -> None:
    done = sorted(builds.glob("*.done"), key=lambda p: p.stat().st_mtime, reverse=True)
    for marker in done[keep:]:
        shutil.rmtree(marker.with_suffix(""), ignore_errors=True)
        marker.unlink(missing_ok=True)


@contextlib.contextmanager
def built(
    tree: Path,
    commands: Sequence[str],
    key: str | None,
    *,
    rebuild: bool,
    say: Callable[[str], None],
) -> Iterator[Path]:
    """The tree to upload: `tree` itself with no build; else a built copy, from the cache
    when `key` (a known commit) was built before with the same commands."""
    if not commands:
        yield tree
        return
    if key is None:  # a plain directory: build a copy, never the user's own files
        with tempfile.TemporaryDirectory(prefix="atomicdeploy-build-") as scratch:
            work = Path(scratch) / "tree"
            shutil.copytree(tree, work, symlinks=True)
            run_commands(work, commands, say)
            yield work
        return
    builds = repository.cache_dir() / "builds"
    builds.mkdir(parents=True, exist_ok=True, mode=0o700)
    done, target = builds / f"{key}.done", builds / key
    if done.exists() and target.is_dir() and not rebuild:
        say("build: reusing the tree built from this commit with these commands (--rebuild)")
        done.touch()
        yield target
        return
    with repository.locked(target):  # two deploys of one commit build it once
        if rebuild or not done.exists():
            _build_into(tree, commands, builds, key, say)
    _prune(builds)
    yield target


def _build_into(
    tree: Path, commands: Sequence[str], builds: Path, key: str, say: Callable[[str], None]
) -> None:
    """Build a copy of `tree`, then put it in the cache as `key` (a failed build leaves
    nothing there)."""
    done, target = builds / f"{key}.done", builds / key
    work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=builds))
    try:
        shutil.copytree(tree, work / "tree", symlinks=True)
        run_commands(work / "tree", commands, say)
        done.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        (work / "tree").rename(target)
        target.chmod(0o755)  # the release's top directory gets this mode: nginx reads it
        done.touch()
    finally:
        shutil.rmtree(work, ignore_errors=True)
