"""The deploy path's own state: its directories, the lock, the releases log, what we read."""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Sequence

from ..layout import Layout
from .core import CURRENT_IS_DIR, LOCK_HELD, NGINX_MARKER, STATE_MARKERS, say

q = shlex.quote


def setup(layout: Layout) -> str:
    """Idempotent mkdirs; refuse a real directory at `current` (atomic swaps need a link)."""
    return " && ".join(
        [
            shlex.join(["mkdir", "-p", "--", layout.releases, layout.shared, layout.dep]),
            f"if [ -d {q(layout.current)} ] && [ ! -L {q(layout.current)} ]; then"
            f" {say(layout.current + ' is a real directory: move it away so that it can be an atomic symlink')} >&2;"  # noqa: E501
            f" exit {CURRENT_IS_DIR}; fi",
        ]
    )


# A glob that matches names holding a newline (a literal one, inside single quotes).
_WITH_NEWLINE = q("*\n*")


def read_state(layout: Layout, *, rsync_version: bool = False) -> str:
    """One round trip: live target, release dirs, releases log, lock owner, and (for a
    deploy, whose upload depends on it) the host's rsync version; the marker is always
    printed, so every answer has the same five parts."""
    cur, rel, log, lock, rsync, foreign = STATE_MARKERS
    return "; ".join(
        [
            f"echo {q(cur)}",
            f"readlink -- {q(layout.current)}",
            f"echo {q(rel)}",
            # Directories only: a symlink planted in releases/ is never a release. A name
            # holding a newline (never a release name) is not listed: it would read as two
            # names, or as a marker and the lines of a section of its own choosing.
            f"find {q(layout.releases)} -mindepth 1 -maxdepth 1 -type d"
            f" ! -name {_WITH_NEWLINE} -printf '%f\\n' 2>/dev/null",
            f"echo {q(log)}",
            # `echo` ends a last line torn by a crash, so the next marker stays whole. Only
            # the tail is read: cleanup compacts the log (compact_log), and a log grown
            # huge by other means must not cost every deploy its whole size.
            f"tail -n {LOG_TAIL} -- {q(layout.log)} 2>/dev/null; echo",
            f"echo {q(lock)}",
            f"cat -- {q(layout.lock_info)} 2>/dev/null; echo",
            f"echo {q(rsync)}",
            *(["rsync --version 2>/dev/null | head -n 1"] if rsync_version else []),
            f"echo {q(foreign)}",
            _foreign(layout),
        ]
    )


def _foreign(layout: Layout) -> str:
    """What Deployer, Capistrano or ansistrano left (see adopt.py), read, never written:
    their logs' tails, the releases Deployer marked bad, and their REVISION files. Lines
    holding a newline name are dropped (`grep -v`), as in the release list."""
    dep = posixpath.join(layout.deploy_path, ".dep", "releases_log")
    dep6 = posixpath.join(layout.deploy_path, ".dep", "releases")
    cap = posixpath.join(layout.deploy_path, "revisions.log")
    return (
        f"tail -n 1000 -- {q(dep)} 2>/dev/null | sed 's/^/D /';"
        f" tail -n 1000 -- {q(dep6)} 2>/dev/null | sed 's/^/S /';"
        f" tail -n 1000 -- {q(cap)} 2>/dev/null | sed 's/^/C /';"
        f" find {q(layout.releases)} -mindepth 2 -maxdepth 2 -name BAD_RELEASE"
        f" ! -path {_WITH_NEWLINE} -printf 'B %P\\n' 2>/dev/null;"
        f" grep -s -m 1 -H '' {q(layout.releases)}/[0-9]*/REVISION 2>/dev/null"
        " | sed 's/^/R /'; true"
    )


def read_status(layout: Layout, root_file: str | None) -> str:
    """`read_state`, then the nginx include's content (if nginx is managed)."""
    parts = [read_state(layout)]
    if root_file:
        parts.append(f"echo {q(NGINX_MARKER)}; cat -- {q(root_file)} 2>/dev/null; true")
    return "; ".join(parts)


def lock(layout: Layout, owner_json: str) -> str:
    """Take the lock with mkdir, which is atomic: two deploys can never both succeed.

    Deployer locks the same path with a file holding its user's name: while a Deployer
    deploy holds it, ours stops, naming that user; while ours holds it (a directory),
    Deployer's `echo user > .dep/deploy.lock` fails, and its deploy stops."""
    return (
        f"if mkdir -- {q(layout.lock)} 2>/dev/null; then"
        f" printf '%s\\n' {q(owner_json)} > {q(layout.lock_info)};"
        f" elif [ -d {q(layout.lock)} ]; then cat -- {q(layout.lock_info)} 2>/dev/null;"
        f" exit {LOCK_HELD};"
        f" elif [ -f {q(layout.lock)} ]; then {_deployer_owner(layout)}; exit {LOCK_HELD};"
        f" else mkdir -- {q(layout.lock)}; fi"
    )


def _deployer_owner(layout: Layout) -> str:
    """Who holds Deployer's lock: the user its file names."""
    return f"printf 'Deployer (user %s)\\n' \"$(head -c 200 -- {q(layout.lock)} | head -n 1)\""


def unlock_own(layout: Layout, token: str) -> str:
    """Release the lock only if it carries our token: never someone else's."""
    return (
        f"if grep -qsF -- {q(_token_field(token))} {q(layout.lock_info)};"
        f" then rm -rf -- {q(layout.lock)}; fi"
    )


def _token_field(token: str) -> str:
    """The exact JSON field the owner record holds (json.dumps, sort_keys)."""
    if not token or not (token.isascii() and token.isalnum()):  # json.dumps escapes the rest
        raise ValueError("a lock token must be a non-empty alphanumeric string")
    return f'"token": "{token}"'


def force_unlock(layout: Layout) -> str:
    """`fab STAGE unlock`: print who held the lock, then remove it."""
    return (
        f"cat -- {q(layout.lock_info)} 2>/dev/null ||"
        f" {{ [ -f {q(layout.lock)} ] && {_deployer_owner(layout)}; }};"
        f" rm -rf -- {q(layout.lock)}"
    )


def then_unlock(script: str, layout: Layout, token: str) -> str:
    """Run `script`, then release our lock whatever happened; keep the script's status.

    A subshell, so an `exit` inside the script (go-live's failure paths, the live-release
    guard) ends only the script, never the unlock after it."""
    return f"( {script}\n); rc=$?; {unlock_own(layout, token)}; exit $rc"


# Lines of .dep/releases.log read per deploy. keep_releases is at most 1,000; a release
# that lives on has about four entries (building, complete, live, rolled back), each two
# lines (append_log starts with a newline): 8,000 lines. A release whose lines all fell
# out of the tail reads as "unknown": cleanup leaves it and rollback never picks it.
LOG_TAIL = 10_000


# Cleanup rewrites the log when it has more lines than this: only the lines of
# releases still on the host are kept, so the log cannot grow without bound.
LOG_COMPACT_AT = 1_000


def compact_log(layout: Layout, keep: Sequence[str]) -> str:
    """Rewrite the log with the lines of the releases in `keep` only (under our lock).

    Each line is JSON with a `"release": "<name>"` field (LogEntry.render); grep keeps
    those lines in order, and the new log replaces the old one in one rename.
    """
    tmp = layout.log + ".tmp"
    patterns = [arg for name in keep for arg in ("-e", f'"release": {json.dumps(name)}')]
    return (
        f"{{ grep -F {shlex.join(patterns)} -- {q(layout.log)} > {q(tmp)};"
        f" [ $? -le 1 ] && mv -f -- {q(tmp)} {q(layout.log)}; }}"
    )


def append_log(layout: Layout, line: str) -> str:
    """One short append with O_APPEND: concurrent writers cannot interleave within a line.

    The leading newline ends a line torn by a crash, so this entry is never glued to it.
    """
    return f"printf '\\n%s\\n' {q(line)} >> {q(layout.log)}"
