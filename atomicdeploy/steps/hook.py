"""hook: run a hook point's commands and functions, and plans that mix them with steps.

A plan is a list of parts, each a named shell script or a Python hook. Consecutive
scripts go to the host as one round trip (`shell.sequence`); a Python hook runs
between them with the host's Connection and the frozen config.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from invoke.exceptions import UnexpectedExit

from .. import shell
from ..config import Config
from ..errors import AtomicDeployError
from ..hooks import FAILURE, POINTS, HookCommand, Hooks, describe, for_roles
from ..inventory.refs import fill_runtime
from ..recipes import commands_for
from ..remote import Remote

Part = tuple[str, "str | Callable[..., Any] | None"]


def shell_commands(cfg: Config, point: str, once: bool | None = None) -> tuple[HookCommand, ...]:
    """Recipes' commands first, then the inventory's, for this host.

    Commands with `roles` only on hosts with one of them; `once` commands only on the
    run's first (matching) host; `once=True`/`False` selects only those / only the others
    (before_switch runs its `once` commands after the barrier).
    """
    return tuple(
        c
        for c in _commands(cfg, point)
        if (once is None or c.once == once)
        and (cfg.runs_once(c.roles) if c.once else for_roles(c.roles, cfg.host.roles))
    )


def _commands(cfg: Config, point: str) -> tuple[HookCommand, ...]:
    host = cfg.host
    recipes = commands_for(
        host.recipes,
        composer_bin=host.composer if host.composer != "composer" else host.bin_composer,
        composer_options=host.composer_options,
        workers=any("worker" in roles for _, roles in cfg.peers),
        php=host.bin_php,
        built=bool(host.build),
    )
    return recipes.get(point, ()) + tuple(host.hooks.get(point, ()))


def unmatched_once(cfgs: Sequence[Config]) -> list[str]:
    """A line for each `once` command whose roles no host of the run has: it is skipped,
    which is not an error (a deploy of the web hosts alone skips the workers' once)."""
    lines: list[str] = []
    for cfg in cfgs:
        for point in POINTS:
            for c in _commands(cfg, point):
                if c.once and c.roles and not any(for_roles(c.roles, r) for _, r in cfg.peers):
                    roles = ", ".join(c.roles)
                    lines.append(
                        f"hook {point}: {c.run!r} (once, roles: {roles}) matches no host"
                        " of this run: skipped"
                    )
    return list(dict.fromkeys(lines))


def placeholders(cfg: Config, text: str) -> str:
    """Deployer's `{{release_path}}`-style placeholders of this run, each pasted shell-quoted
    (one word, whatever the path holds); the inventory's own keys were filled in at load."""
    values = {
        "release_path": cfg.release_path if cfg.release else "",
        "release_name": cfg.release,
        "previous_release": cfg.previous or "",
        "current_path": cfg.layout.current,
    }
    return fill_runtime(text, values, "hook")


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


def script(cfg: Config, point: str, once: bool | None = None) -> str | None:
    """The point's shell commands as one script, or None; each stops the deploy on failure."""
    cmds = shell_commands(cfg, point, once)
    if not cmds:
        return None
    cwd = cfg.host.deploy_path if point in ("before_release", FAILURE) else cfg.release_path
    return shell.each_or_exit(
        [shell.hook(cwd, placeholders(cfg, c.run), requires=c.requires, env=env(cfg)) for c in cmds]
    )


def parts(cfg: Config, point: str, hooks: Hooks, once: bool | None = None) -> list[Part]:
    """A hook point as plan parts: its shell script, then its Python functions."""
    out: list[Part] = [(f"hook {point}", script(cfg, point, once))]
    out += [(f"hook {point} {describe(fn)}", fn) for fn in hooks.at(point, cfg.host.roles)]
    return out


def run_plan(remote: Remote, cfg: Config, plan: Sequence[Part], step: str) -> None:
    """Run the parts in order: consecutive scripts as one round trip."""
    pending: list[tuple[str, str | None]] = []

    def flush() -> None:
        if any(s for _, s in pending):
            remote.run(shell.sequence(pending), step)
        pending.clear()

    for name, part in plan:
        if part is None or isinstance(part, str):
            pending.append((name, part))
            continue
        flush()
        call(remote, cfg, name, part)
    flush()


def call(remote: Remote, cfg: Config, name: str, fn: Callable[..., Any], *args: Any) -> None:
    """A Python hook: any exception becomes a failure of this host at this hook.
    In a dry run it is only recorded."""
    try:
        c = _HookConnection(remote.conn, remote.out, remote.err)
        remote.call(name, describe(fn), lambda: fn(c, cfg, *args))
    except AtomicDeployError:
        raise
    except (Exception, SystemExit) as exc:  # sys.exit() in a hook must not skip our clean-up
        raise AtomicDeployError(_describe_error(exc), host=remote.name, step=name) from exc


def _describe_error(exc: BaseException) -> str:
    """One line: Invoke's UnexpectedExit prints a whole report; keep what a user needs."""
    if isinstance(exc, UnexpectedExit):
        result = exc.result
        last = next(
            (
                ln
                for ln in reversed((result.stderr or result.stdout or "").splitlines())
                if ln.strip()
            ),
            "",
        )
        command = result.command if len(result.command) <= 80 else result.command[:77] + "..."
        return f"command {command!r} exited {result.exited}" + (f": {last}" if last else "")
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Lines(io.TextIOBase):
    """Output of a hook's commands, passed on in whole lines (the Reporter prefixes the
    host and masks secrets: a secret split across two reads is masked whole)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit, self._part = emit, ""

    def write(self, text: str) -> int:
        self._part += text
        *lines, self._part = self._part.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        """Invoke flushes after every read: a partial line waits for the rest."""

    def finish(self) -> None:
        if self._part:
            self._emit(self._part)
            self._part = ""


class _HookConnection:
    """The host's Connection as a hook sees it: `run` and `sudo` never read our stdin
    (CI has none) and print through the Reporter; everything else is the real Connection."""

    def __init__(self, conn: Any, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        self._conn, self._out, self._err = conn, out, err

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._conn, attr)

    def _call(self, method: str, command: str, **kwargs: Any) -> Any:
        kwargs.setdefault("in_stream", False)
        mine = [_Lines(self._out), _Lines(self._err)]
        kwargs.setdefault("out_stream", mine[0])
        kwargs.setdefault("err_stream", mine[1])
        try:
            return getattr(self._conn, method)(command, **kwargs)
        finally:
            for stream in mine:
                stream.finish()

    def run(self, command: str, **kwargs: Any) -> Any:
        return self._call("run", command, **kwargs)

    def sudo(self, command: str, **kwargs: Any) -> Any:
        return self._call("sudo", command, **kwargs)


def on_failure(remote: Remote, cfg: Config, hooks: Hooks, error: BaseException) -> None:
    """After a failed deploy was cleaned up: the user's failure commands and functions."""
    text = script(cfg, FAILURE)
    if text:
        remote.run(text, f"hook {FAILURE}")
    for fn in hooks.at(FAILURE):
        call(remote, cfg, f"hook {FAILURE} {describe(fn)}", fn, error)
