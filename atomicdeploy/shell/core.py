"""The frame of every script: quoting, markers, sequences, and how a script reaches a host.

A script is sent on the SSH channel's stdin behind one fixed command line (`remote`), so
nothing of it, secrets included, is in any process's arguments; parts of a sequence name
themselves on stderr when they start and when they fail.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

q = shlex.quote


def say(text: str) -> str:
    """Print `text` exactly: dash's `echo` would rewrite the backslash escapes in it."""
    return f"printf '%s\\n' {q(text)}"


# Exit statuses our scripts use to say something precise.
LOCK_HELD = 75


CURRENT_IS_DIR = 76


SHARED_MISSING = 77


REFUSED = 78


STATE_MARKERS = (
    "@@ad:current@@",
    "@@ad:releases@@",
    "@@ad:log@@",
    "@@ad:lock@@",
    "@@ad:rsync@@",
    "@@ad:foreign@@",
)


STEP_MARKER = "@@ad:step="


# Printed on stderr as each part of a sequence starts: when a part hangs and
# command_timeout stops the script, the last one names it.
START_MARKER = "@@ad:start="


WARN_MARKER = "@@ad:warn="


# A line a go-live script prints for its host's report (what the opcache step decided).
NOTE_MARKER = "@@ad:note="


ARMED_MARKER = "@@ad:armed"


# Printed on stdout by a script that waits for the controller's next script (`then_next`).
NEXT_MARKER = "@@ad:next"


SWITCHED_MARKER = "@@ad:switched="


NGINX_MARKER = "@@ad:nginx@@"


OPCACHE_OK = "atomicdeploy:opcache-reset:ok"


def sequence(parts: Sequence[tuple[str, str | None]]) -> str:
    """Several steps in one round trip; the first failing part names itself on stderr.

    Each SSH round trip costs a channel and a shell start on the host (0.1-0.3 s
    even on loopback), so a phase sends one script instead of one per command.
    Each part also says when it starts, so that a part that never returns can be
    named after command_timeout stops it.
    """
    out = []
    for name, script in parts:
        if script:
            marker = q(STEP_MARKER + name)
            # A subshell, so a part's own `exit N` still reaches the marker.
            out.append(
                f"{started(name)}\n"
                f"( {script}\n) || {{ rc=$?; printf '%s\\n' {marker} >&2; exit $rc; }}"
            )
    return "\n".join(out) or "true"


def all_of(parts: Sequence[str]) -> str | None:
    """`parts` in order, each in braces so its own `;` and `||` stay inside it; the first
    that fails ends the whole with its status. None when there is nothing to run."""
    return " && ".join(f"{{ {p}; }}" for p in parts) or None


def each_or_exit(parts: Sequence[str]) -> str | None:
    """`parts` one per line; a part that fails ends the script with its own status."""
    return "\n".join(f"{p} || exit $?" for p in parts) or None


def started(name: str) -> str:
    """Say on stderr that part `name` starts (see START_MARKER)."""
    return f"printf '%s\\n' {q(START_MARKER + name)} >&2"


# The one command line a host's sshd is asked to run. The script itself follows on the
# channel's stdin, length first, so that it never appears in any process's arguments: a
# hook's environment, a health-check URL's password or a webhook token in a script would
# otherwise be readable by every local user in `ps` or /proc/<pid>/cmdline for as long as
# the command runs. `read` takes the length one byte at a time and `head -c` reads exactly
# that many bytes, so what follows on stdin (the armed switch's go signal) stays unread.
# `eval` is a builtin: the script runs in this same shell, no new argv.
_BOOTSTRAP = 'IFS= read -r ad_n && ad_s=$(head -c "$ad_n") && eval "$ad_s"'


def then_next(script: str) -> str:
    """`script`, then NEXT_MARKER on stdout, then the script the controller sends back on
    stdin (as `script_payload` frames it), in the same shell: a second round trip without
    a second channel, login shell and bootstrap. A failing `script` exits first, so what is
    sent back only ever runs after it succeeded. `script` gets no stdin: what follows on it
    is for the next script."""
    return f"{{ {script}\n}} </dev/null\necho {NEXT_MARKER}\n{_BOOTSTRAP}"


def remote(*, stdin: bool = False) -> str:
    """The command line that runs a script sent by `script_payload`: `sh`, so the deploy
    user's login shell (bash, zsh, fish) does not matter, and stdin closed for the script
    (unless it reads a go signal from it: every command inside that could read stdin then
    has its own `</dev/null`)."""
    return shlex.join(["sh", "-c", _BOOTSTRAP if stdin else f"{_BOOTSTRAP} </dev/null"])


def script_payload(script: str, umask: str = "") -> bytes:
    """What `remote()` reads from stdin: the script's length in bytes, a newline, the script.

    With `umask`, the script starts by setting it, so every file it creates has the
    modes the operator chose whatever the account's login settings.
    """
    if umask:
        script = f"umask {q(umask)}\n{script}"
    data = script.encode()
    return f"{len(data)}\n".encode() + data
