"""hook: run a hook point's commands and functions, and plans that mix them with steps.

A plan is a list of parts, each a named shell script or a Python hook. Consecutive
scripts go to the host as one round trip (`commands.sequence`); a Python hook runs
between them with the host's Connection and the frozen config.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .. import commands
from ..config import Config
from ..errors import AtomicDeployError
from ..hooks import FAILURE, HookCommand, Hooks, describe
from ..recipes import commands_for
from ..remote import Remote

Part = tuple[str, "str | Callable[..., Any] | None"]


def shell_commands(cfg: Config, point: str) -> tuple[HookCommand, ...]:
    """Recipes' commands first, then the inventory's, for this host."""
    host = cfg.host
    recipes = commands_for(host.recipes, composer_bin=host.composer,
                           composer_options=host.composer_options)  # fmt: skip
    cmds = recipes.get(point, ()) + tuple(host.hooks.get(point, ()))
    return tuple(c for c in cmds if cfg.primary or not c.once)


def env(cfg: Config) -> list[tuple[str, str]]:
    """What a hook command can read: the same facts a Python hook gets from `cfg`."""
    return [
        ("DEPLOY_PATH", cfg.host.deploy_path),
        ("RELEASE", cfg.release),
        ("RELEASE_PATH", cfg.release_path if cfg.release else ""),
        ("PREVIOUS_RELEASE", cfg.previous or ""),
        ("PREVIOUS_PATH", cfg.previous_path or ""),
        ("STAGE", cfg.run.stage),
        ("HOST", cfg.host.name),
        ("REVISION", cfg.run.revision),
    ]


def script(cfg: Config, point: str) -> str | None:
    """The point's shell commands as one script, or None; each stops the deploy on failure."""
    cmds = shell_commands(cfg, point)
    if not cmds:
        return None
    cwd = cfg.host.deploy_path if point in ("before_release", FAILURE) else cfg.release_path
    return "\n".join(commands.hook(cwd, c.run, requires=c.requires, env=env(cfg)) + " || exit $?"
                     for c in cmds)  # fmt: skip


def parts(cfg: Config, point: str, hooks: Hooks) -> list[Part]:
    """A hook point as plan parts: its shell script, then its Python functions."""
    out: list[Part] = [(f"hook {point}", script(cfg, point))]
    out += [(f"hook {point} {describe(fn)}", fn) for fn in hooks.at(point)]
    return out


def run_plan(remote: Remote, cfg: Config, plan: Sequence[Part], step: str,
             dry: bool = False) -> None:  # fmt: skip
    """Run the parts in order: consecutive scripts as one round trip."""
    pending: list[tuple[str, str | None]] = []

    def flush() -> None:
        if any(s for _, s in pending):
            remote.run(commands.sequence(pending), step)
        pending.clear()

    for name, part in plan:
        if part is None or isinstance(part, str):
            pending.append((name, part))
            continue
        flush()
        call(remote, cfg, name, part, dry=dry)
    flush()


def call(remote: Remote, cfg: Config, name: str, fn: Callable[..., Any], *args: Any,
         dry: bool = False) -> None:  # fmt: skip
    """A Python hook: any exception becomes a failure of this host at this hook."""
    if dry:
        remote.record(name, f"python: {describe(fn)}(c, cfg)")
        return
    try:
        fn(_HookConnection(remote.conn, remote.name, remote.mask), cfg, *args)
    except AtomicDeployError:
        raise
    except Exception as exc:
        raise AtomicDeployError(f"{type(exc).__name__}: {exc}", host=remote.name,
                                step=name) from exc  # fmt: skip


class _Lines(io.TextIOBase):
    """Output of a hook's commands: whole lines, prefixed with the host, secrets masked."""

    def __init__(self, stream: TextIO, prefix: str, mask: Callable[[str], str]) -> None:
        self._stream, self._prefix, self._mask, self._part = stream, prefix, mask, ""

    def write(self, text: str) -> int:
        self._part += text
        *lines, self._part = self._part.split("\n")
        for line in lines:
            self._stream.write(f"{self._prefix}{self._mask(line)}\n")
        self._stream.flush()
        return len(text)

    def flush(self) -> None:
        if self._part:
            self._stream.write(f"{self._prefix}{self._mask(self._part)}\n")
            self._part = ""
        self._stream.flush()


class _HookConnection:
    """The host's Connection as a hook sees it: `run` and `sudo` never read our stdin
    (CI has none) and print through `_Lines`; everything else is the real Connection."""

    def __init__(self, conn: Any, name: str, mask: Callable[[str], str]) -> None:
        self._conn, self._name, self._mask = conn, name, mask

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._conn, attr)

    def _call(self, method: str, command: str, **kwargs: Any) -> Any:
        kwargs.setdefault("in_stream", False)
        out = kwargs.setdefault("out_stream", _Lines(sys.stdout, f"[{self._name}] ", self._mask))
        err = kwargs.setdefault("err_stream", _Lines(sys.stderr, f"[{self._name}] ", self._mask))
        try:
            return getattr(self._conn, method)(command, **kwargs)
        finally:
            for stream in (out, err):
                stream.flush()

    def run(self, command: str, **kwargs: Any) -> Any:
        return self._call("run", command, **kwargs)

    def sudo(self, command: str, **kwargs: Any) -> Any:
        return self._call("sudo", command, **kwargs)


def on_failure(remote: Remote, cfg: Config, hooks: Hooks, error: BaseException,
               dry: bool = False) -> None:  # fmt: skip
    """After a failed deploy was cleaned up: the user's failure commands and functions."""
    text = script(cfg, FAILURE)
    if text:
        remote.run(text, f"hook {FAILURE}")
    for fn in hooks.at(FAILURE):
        call(remote, cfg, f"hook {FAILURE} {describe(fn)}", fn, error, dry=dry)
