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
    """Idempotent mkdirs; refuse a real directory at `current` (atomic swaps need a link).

    `mkdir` runs only when a directory is missing: every run starts with this script on
    every host, and a process started costs the host more than the tests (builtins)."""
    dirs = (layout.releases, layout.shared, layout.dep)
    return " && ".join(
        [
            "{ " + " && ".join(f"[ -d {q(d)} ]" for d in dirs) + "; }"
            f" || {shlex.join(['mkdir', '-p', '--', *dirs])}",
            f"if [ -d {q(layout.current)} ] && [ ! -L {q(layout.current)} ]; then"
            f" {say(layout.current + ' is a real directory: move it away so that it can be an atomic symlink')} >&2;"  # noqa: E501
            f" exit {CURRENT_IS_DIR}; fi",
        ]
    )


# A `case` pattern that matches names holding a newline (a literal one, inside quotes).
_WITH_NEWLINE = f"*{q(chr(10))}*"


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
            _release_dirs(layout.releases),
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


def _release_dirs(releases: str) -> str:
    """The names of the real directories in `releases/`, hidden ones too, one per line.

    Shell builtins only (globs and tests, no `find`): this runs on every host at the start
    of every run, and each process started costs a host about a millisecond of CPU."""
    rel = q(releases)
    return (
        f"for ad_d in {rel}/* {rel}/.[!.]* {rel}/..?*; do"
        ' { [ -d "$ad_d" ] && [ ! -L "$ad_d" ]; } || continue; ad_d=${ad_d##*/};'
        f" case $ad_d in {_WITH_NEWLINE}) continue;; esac; printf '%s\\n' \"$ad_d\"; done"
    )


def _foreign(layout: Layout) -> str:
    """What Deployer, Capistrano or ansistrano left (see adopt.py), read, never written:
    their logs' tails, the releases Deployer marked bad, and their REVISION files. A name
    holding a newline is skipped, as in the release list.

    A log is read only if it is a regular file (a FIFO planted there would hang the run),
    and with builtins where one will do: on a host they never touched this costs no
    process at all."""
    dep = posixpath.join(layout.deploy_path, ".dep", "releases_log")
    dep6 = posixpath.join(layout.deploy_path, ".dep", "releases")
    cap = posixpath.join(layout.deploy_path, "revisions.log")
    rel = q(layout.releases)
    tails = " ".join(
        f"[ -f {q(path)} ] && tail -n 1000 -- {q(path)} 2>/dev/null | sed 's/^/{kind} /';"
        for kind, path in (("D", dep), ("S", dep6), ("C", cap))
    )
    bad = (
        f"for ad_f in {rel}/*/BAD_RELEASE; do"
        ' { [ -e "$ad_f" ] || [ -L "$ad_f" ]; } && [ ! -L "${ad_f%/*}" ] || continue;'
        " ad_b=${ad_f%/*}; ad_b=${ad_b##*/};"
        f" case $ad_b in {_WITH_NEWLINE}) continue;; esac;"
        " printf 'B %s/BAD_RELEASE\\n' \"$ad_b\"; done;"
    )
    revisions = (
        f'for ad_f in {rel}/[0-9]*/REVISION; do [ -f "$ad_f" ] || continue;'
        f" case $ad_f in {_WITH_NEWLINE}) continue;; esac;"
        ' ad_l=; { IFS= read -r ad_l || [ -n "$ad_l" ]; } 2>/dev/null <"$ad_f" || continue;'
        ' printf \'R %s:%s\\n\' "$ad_f" "$ad_l"; done 2>/dev/null; true'
    )
    return f"{tails} {bad} {revisions}"


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
    """Release the lock only if it carries our token: never someone else's.

    The owner record is one line (`lock` writes it with printf); it is read with the
    shell's own `read`, not `grep`: one process fewer on every host of every run."""
    return (
        f'ad_o=; {{ IFS= read -r ad_o || [ -n "$ad_o" ]; }} 2>/dev/null <{q(layout.lock_info)};'
        f" case $ad_o in *{q(_token_field(token))}*) rm -rf -- {q(layout.lock)};; esac"
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


# Cleanup rewrites the log when it has more entries than this (see compact_log). A
# release rolled back to again and again gains two entries each time; without the
# rewrite every run would read, and hold in memory on the controller, a log that grows
# with the number of runs instead of with the releases on the host.
LOG_COMPACT_AT = 100

# Each argument is `"release": <name as JSON>`, the text a line of that release holds
# (LogEntry.render: sorted keys, ASCII only; a quote inside a value is escaped, so that
# text cannot appear inside another field). A whole line ends with `}` and has its state:
# a line torn by a crash is never taken as a release's newest one.
_COMPACT_AWK = r"""
BEGIN { n = ARGC - 2; for (i = 1; i <= n; i++) { want[i] = ARGV[i]; delete ARGV[i] } }
/}$/ && index($0, "\"state\": ") {
    for (i = 1; i <= n; i++) if (index($0, want[i])) {
        if (!(i in first)) first[i] = NR
        if (index($0, "\"revision\": ")) rev[i] = NR
        last[i] = NR; text[NR] = $0; break
    }
}
END {
    for (i = 1; i <= n; i++) if (i in first) {
        keep[first[i]] = 1; keep[last[i]] = 1; if (i in rev) keep[rev[i]] = 1
    }
    for (l = 1; l <= NR; l++) if (l in keep) print text[l]
}
"""


def compact_log(layout: Layout, keep: Sequence[str]) -> str:
    """Rewrite the log (under our lock) with, for each release in `keep`, the three lines
    its state is read from: its first (who built it, when), its newest with a revision,
    and its newest (its state). Lines of other releases, and torn ones, are dropped.

    The kept lines stay byte for byte and in order, and the new log replaces the old one
    in one rename, so a crash leaves one or the other.
    """
    tmp = layout.log + ".tmp"
    args = [f'"release": {json.dumps(name)}' for name in keep]
    return (
        f"{{ awk {q(_COMPACT_AWK)} {shlex.join([*args, layout.log])} > {q(tmp)}"
        f" && mv -f -- {q(tmp)} {q(layout.log)}; }}"
    )


def append_log(layout: Layout, line: str) -> str:
    """One short append with O_APPEND: concurrent writers cannot interleave within a line.

    The leading newline ends a line torn by a crash, so this entry is never glued to it.
    """
    return f"printf '\\n%s\\n' {q(line)} >> {q(layout.log)}"
