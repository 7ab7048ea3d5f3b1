"""The user's own shell: hook commands, run in the release directory."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

q = shlex.quote


def hook(cwd: str, command: str, *, requires: str = "", env: Sequence[tuple[str, str]] = ()) -> str:
    """Run a user's hook command in `cwd`, in a subshell, stdin closed.

    The command is the user's own shell text, handed to `eval` as one quoted word in
    its own subshell, so that its quotes, braces or `exit` cannot change the script
    around it. `env` (the release path, the stage...) is exported to it. `export` and
    `eval` are shell builtins: neither the command nor a value (a token, a password)
    ever appears in a process's arguments, where `ps` would show them to every user.
    With `requires`, the command is skipped when that file is not in `cwd` (recipes:
    composer.json, artisan).
    """
    for name, _ in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not an environment variable name: {name!r}")
    exports = "".join(f"export {name}={q(value)}; " for name, value in env)
    run = f"( {exports}eval {q(command)} ) </dev/null"
    if requires:
        run = f"if [ -f {q(requires)} ]; then {run}; fi"
    return f"cd -- {q(cwd)} && {run}"


def in_current(current: str, command: str) -> str:
    """`fab STAGE run`: the user's command in the live release, its stderr with its stdout
    (one stream, in order), stdin closed; the exit status is the command's."""
    return f"cd -- {q(current)} && ( eval {q(command)} ) 2>&1 </dev/null"


def login_shell(current: str, deploy_path: str) -> str:
    """`fab STAGE ssh`: an interactive login shell in the live release (in the deploy path
    if nothing is live yet)."""
    return (
        f"cd -- {q(current)} 2>/dev/null || cd -- {q(deploy_path)} 2>/dev/null;"
        ' exec "${SHELL:-/bin/sh}" -l'
    )
