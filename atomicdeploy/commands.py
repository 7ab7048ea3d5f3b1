"""The only emitter of shell text. Pure: every function returns a string or an argv.

Every value goes through `shlex.quote`/`shlex.join`; nothing else in atomicdeploy
builds shell. A remote command is sent as `sh -c <script> </dev/null`, so the
deploy user's login shell (bash, zsh, fish) does not matter and no command can
wait on a stdin that never closes.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence

from .layout import Layout, check_relative_path
from .secrets import redact_url_passwords

q = shlex.quote


def say(text: str) -> str:
    """Print `text` exactly: dash's `echo` would rewrite the backslash escapes in it."""
    return f"printf '%s\\n' {q(text)}"

# Exit statuses our scripts use to say something precise.
LOCK_HELD = 75
CURRENT_IS_DIR = 76
SHARED_MISSING = 77
REFUSED = 78

STATE_MARKERS = ("@@ad:current@@", "@@ad:releases@@", "@@ad:log@@", "@@ad:lock@@",
                 "@@ad:rsync@@")  # fmt: skip


STEP_MARKER = "@@ad:step="
# Printed on stderr as each part of a sequence starts: when a part hangs and
# command_timeout stops the script, the last one names it.
START_MARKER = "@@ad:start="


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
            out.append(f"{started(name)}\n"
                       f"( {script}\n) || {{ rc=$?; printf '%s\\n' {marker} >&2; exit $rc; }}")
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


def then_unlock(script: str, layout: Layout, token: str) -> str:
    """Run `script`, then release our lock whatever happened; keep the script's status.

    A subshell, so an `exit` inside the script (go-live's failure paths, the live-release
    guard) ends only the script, never the unlock after it."""
    return f"( {script}\n); rc=$?; {unlock_own(layout, token)}; exit $rc"


# The one command line a host's sshd is asked to run. The script itself follows on the
# channel's stdin, length first, so that it never appears in any process's arguments: a
# hook's environment, a health-check URL's password or a webhook token in a script would
# otherwise be readable by every local user in `ps` or /proc/<pid>/cmdline for as long as
# the command runs. `read` takes the length one byte at a time and `head -c` reads exactly
# that many bytes, so what follows on stdin (the armed switch's go signal) stays unread.
# `eval` is a builtin: the script runs in this same shell, no new argv.
_BOOTSTRAP = 'IFS= read -r ad_n && ad_s=$(head -c "$ad_n") && eval "$ad_s"'


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


def read_state(layout: Layout, *, rsync_version: bool = False) -> str:
    """One round trip: live target, release dirs, releases log, lock owner, and (for a
    deploy, whose upload depends on it) the host's rsync version; the marker is always
    printed, so every answer has the same five parts."""
    cur, rel, log, lock, rsync = STATE_MARKERS
    return "; ".join(
        [
            f"echo {q(cur)}",
            f"readlink -- {q(layout.current)}",
            f"echo {q(rel)}",
            # Directories only: a symlink planted in releases/ is never a release.
            f"find {q(layout.releases)} -mindepth 1 -maxdepth 1 -type d -printf '%f\\n'"
            " 2>/dev/null",
            f"echo {q(log)}",
            # `echo` ends a last line torn by a crash, so the next marker stays whole. Only
            # the tail is read: cleanup compacts the log (compact_log), and a log grown
            # huge by other means must not cost every deploy its whole size.
            f"tail -n {LOG_TAIL} -- {q(layout.log)} 2>/dev/null; echo",
            f"echo {q(lock)}",
            f"cat -- {q(layout.lock_info)} 2>/dev/null; echo",
            f"echo {q(rsync)}",
            *(["rsync --version 2>/dev/null | head -n 1"] if rsync_version else []),
            "true",
        ]
    )


NGINX_MARKER = "@@ad:nginx@@"


def read_status(layout: Layout, root_file: str | None) -> str:
    """`read_state`, then the nginx include's content (if nginx is managed)."""
    parts = [read_state(layout)]
    if root_file:
        parts.append(f"echo {q(NGINX_MARKER)}; cat -- {q(root_file)} 2>/dev/null; true")
    return "; ".join(parts)


def lock(layout: Layout, owner_json: str) -> str:
    """Take the lock with mkdir, which is atomic: two deploys can never both succeed."""
    return (
        f"if mkdir -- {q(layout.lock)} 2>/dev/null; then"
        f" printf '%s\\n' {q(owner_json)} > {q(layout.lock_info)};"
        f" elif [ -d {q(layout.lock)} ]; then cat -- {q(layout.lock_info)} 2>/dev/null;"
        f" exit {LOCK_HELD};"
        f" else mkdir -- {q(layout.lock)}; fi"
    )


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
    return f"cat -- {q(layout.lock_info)} 2>/dev/null; rm -rf -- {q(layout.lock)}"


# Lines of .dep/releases.log read per deploy: keep_releases is at most 1,000, and a
# release that lives on has a handful of lines (building, complete, live, ...).
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
    return (f"{{ grep -F {shlex.join(patterns)} -- {q(layout.log)} > {q(tmp)};"
            f" [ $? -le 1 ] && mv -f -- {q(tmp)} {q(layout.log)}; }}")  # fmt: skip


def append_log(layout: Layout, line: str) -> str:
    """One short append with O_APPEND: concurrent writers cannot interleave within a line.

    The leading newline ends a line torn by a crash, so this entry is never glued to it.
    """
    return f"printf '\\n%s\\n' {q(line)} >> {q(layout.log)}"


def sync_release(path: str) -> str:
    """Flush the filesystem holding the release (syncfs) before it is marked complete.

    ext4 allocates a new file's blocks only at writeback, up to 30 s later: a crash in
    that window after the switch would bring the host back with `current` on a release
    of empty files. Flushed before go-live, the switch's rename also no longer queues
    behind this release's writeback (30 loopback hosts on one disk, rollback right after
    a deploy: skew 163 and 174 ms without, 65 and 50 ms with). Plain `sync` where
    `sync -f` is unknown (coreutils < 8.24, old busybox).
    """
    # Only an unknown option falls back (to flushing every filesystem); a real failure
    # of the flush (EIO) fails the part, and the release is not logged complete.
    return (f"{{ out=$(sync -f -- {q(path)} 2>&1) || case $out in *option*) sync ;;"
            " *) printf '%s\\n' \"$out\" >&2; false ;; esac; }")


def create_release(layout: Layout, name: str, log_line: str) -> str:
    """mkdir without -p: an existing release directory is an error, never reused."""
    return f"mkdir -- {q(layout.release(name))} && {append_log(layout, log_line)}"


def fill_release(layout: Layout, name: str) -> str:
    """Copy the upload cache into the new (empty) release, on the host.

    `cp -a` keeps modes, times and links (as rsync -a would) and shares no inode with
    the cache or the live release, so a build step that edits a file in place changes
    this release only. Extended attributes and SELinux labels are not copied: the
    release's own directory decides them, as for files rsync creates. It costs a third
    of the CPU of rsync's `--copy-dest` copy (0.12 against 0.39 s for 2,000 files here).
    """
    return shlex.join(["cp", "-a", "--no-preserve=xattr,context", "--",
                       layout.upload_cache + "/.", layout.release(name) + "/"])


def _refuse_if_live(layout: Layout, name: str) -> str:
    # -ef compares inodes, so an absolute `current` link (left by another tool) counts too.
    return (
        f"if [ {q(layout.current)} -ef {q(layout.release(name))} ]; then"
        f" {say('refusing to remove the live release ' + name)} >&2; exit {REFUSED}; fi"
    )


def remove_release(layout: Layout, name: str, log_line: str | None = None) -> str:
    """Remove one release directory, never the live one; `rm -rf` does not follow links."""
    # `exit` inside the guard ends the script, so `;` is enough after it.
    script = f"{_refuse_if_live(layout, name)}; rm -rf -- {q(layout.release(name))}"
    return f"{script} && {append_log(layout, log_line)}" if log_line else script


def remove_releases(layout: Layout, names: Sequence[str]) -> str:
    """Cleanup: each name checked against `current` at the moment of removal."""
    return "; ".join(
        f"{{ {_refuse_if_live(layout, n)}; rm -rf -- {q(layout.release(n))}; }}" for n in names
    )


def link_shared_dir(layout: Layout, name: str, item: str) -> str:
    """Move a shared dir out of the release and link it from `shared/`.

    The first deploy seeds `shared/<item>` from the release; later ones keep what
    `shared/` holds (uploads, logs) and only replace the release's copy with a link.
    """
    shared = layout.shared_item(item)
    target = layout.release_item(name, item)
    return " && ".join(
        [
            f"if [ ! -e {q(shared)} ]; then mkdir -p -- {q(_parent(shared))} &&"
            f" if [ -d {q(target)} ] && [ ! -L {q(target)} ];"
            f" then cp -a -- {q(target)} {q(shared)}; else mkdir -p -- {q(shared)}; fi; fi",
            shlex.join(["rm", "-rf", "--", target]),
            shlex.join(["mkdir", "-p", "--", _parent(target)]),
            shlex.join(["ln", "-s", "--", layout.shared_link_target(item), target]),
        ]
    )


def link_shared_file(layout: Layout, name: str, item: str, *, secret: bool = False) -> str:
    """Like `link_shared_dir`, but a file missing from both places is an error, not `touch`.

    A `secret` file (`.env`: keys, passwords) is seeded 0600 whatever its mode in the
    source: `cp -a` would keep a 0644 from the developer's checkout, readable by every
    user on the host for as long as the file lives in `shared/`.
    """
    shared = layout.shared_item(item)
    target = layout.release_item(name, item)
    missing = f"shared file {item} is missing: create {shared} on the host"
    seed = shlex.join(["cp", "-a", "--", target, shared])
    if secret:
        # A new file gets the source's mode minus the umask: 0600 from the start, no window.
        seed = f"( umask 077 && {shlex.join(['cp', '--', target, shared])} )"
    return " && ".join(
        [
            f"if [ ! -e {q(shared)} ]; then"
            f" if [ -f {q(target)} ] && [ ! -L {q(target)} ]; then"
            f" mkdir -p -- {q(_parent(shared))} && {seed};"
            f" else {say(missing)} >&2; exit {SHARED_MISSING}; fi; fi",
            shlex.join(["rm", "-rf", "--", target]),
            shlex.join(["mkdir", "-p", "--", _parent(target)]),
            shlex.join(["ln", "-s", "--", layout.shared_link_target(item), target]),
        ]
    )


def make_writable(
    layout: Layout,
    name: str,
    dirs: Sequence[str],
    mode: str,
    *,
    shared_dirs: Sequence[str] = (),
    chmod_mode: str = "ug+rwX",
    http_user: str = "",
    recursive: bool = True,
    use_sudo: bool = False,
) -> str | None:
    """Make `dirs` (relative to the release) writable by the web server.

    The web server's user can write below a shared dir, so it can replace
    `shared/storage/logs` (or a middle part such as `framework`) with a link to a
    directory the deploy user or root owns; a path handed to chmod, setfacl or
    chown would follow it (`-P` only stops links met during the recursive walk).
    So each dir is reached where it really lives (`shared/<dir>` below a shared
    dir, else in the release) one part at a time, and the change runs on `.` only
    after the physical working directory is exactly the expected one: a planted
    link, even one swapped in between the check and the `cd`, fails the step
    with a line naming it, and nothing it points to is touched.
    """
    if mode == "skip" or not dirs:
        return None
    change = _writable_change(mode, chmod_mode, http_user, recursive, use_sudo)
    parts = []
    for item in dirs:
        base, rel = _writable_home(layout, name, item, shared_dirs)
        parts.append(_in_verified_dir(base, rel, item, change))
    return " && ".join(parts)


def _writable_change(mode: str, chmod_mode: str, http_user: str, recursive: bool,
                     use_sudo: bool) -> str:  # fmt: skip
    """The command that changes `.`: its walk never follows a link (chmod never does)."""
    rec = ["-R"] if recursive else []
    physical = ["-R", "-P"] if recursive else []
    if mode == "chmod":
        return shlex.join(["chmod", *rec, chmod_mode, "--", "."])
    if mode == "chown":
        # `sudo -n` fails at once instead of prompting for a password nobody can type.
        sudo = ["sudo", "-n"] if use_sudo else []
        return shlex.join([*sudo, "chown", *physical, http_user, "--", "."])
    if mode == "acl":
        # The deploy user keeps access too; `$(id -un)` is expanded on the host on purpose.
        spec = q(f"u:{http_user}:rwX,u:") + '"$(id -un)"' + q(":rwX")
        flags = shlex.join(["setfacl", *physical])
        return f"{flags} -m {spec} -- . && {flags} -d -m {spec} -- ."
    raise ValueError(f"unknown writable mode {mode!r}")  # validated by the inventory


def _writable_home(layout: Layout, name: str, item: str,
                   shared_dirs: Sequence[str]) -> tuple[str, str]:  # fmt: skip
    """(base, path below it) where writable dir `item` really lives.

    Below a shared dir that is `shared/`, not the release's link to it: the release
    link is ours, but walking through it would make every later part relative to
    a directory the web server can write.
    """
    rel = check_relative_path(item, "writable dir")
    for shared in sorted(shared_dirs, key=len, reverse=True):
        top = check_relative_path(shared, "shared dir")
        if rel == top or rel.startswith(top + "/"):
            return layout.shared, rel
    return layout.release(name), rel


def _in_verified_dir(base: str, rel: str, item: str, command: str) -> str:
    """Run `command` in `base/rel`, reached without following any link below `base`.

    Missing parts are made with `mkdir` (which never follows a link either). The
    `[ -L ]` test names a planted link; the `pwd -P` test is the guard, since it
    also catches a link swapped in after that test.
    """
    refused = q(f"writable dir {item}: ")
    link = q(" is a symbolic link: refusing to follow it (nothing was changed through it)")
    moved = q(" is not where it should be (a link was planted on the way): nothing changed")
    names = " ".join(q(p) for p in rel.split("/"))
    return (
        f"( cd -P -- {q(base)} && top=$(pwd -P) && at={q(base)} || exit 1;"
        f" for p in {names}; do at=\"$at/$p\";"
        f" if [ -L \"$p\" ]; then printf '%s\\n' {refused}\"$at\"{link} >&2; exit {REFUSED}; fi;"
        ' { [ -d "$p" ] || mkdir -- "$p"; } && cd -P -- "$p" || exit 1; done;'
        f" [ \"$(pwd -P)\" = \"$top\"/{q(rel)} ] ||"
        f" {{ printf '%s\\n' {refused}\"$at\"{moved} >&2; exit {REFUSED}; }};"
        f" {command} )"
    )


def swap(layout: Layout, target: str) -> tuple[str, str]:
    """The one swap primitive, as its two halves, for deploy, rollback, `switch` and the
    switch back after a failed nginx reload alike.

    `ln -sfn` makes a temporary link beside `current` (nothing changes yet); `mv -fT`
    renames it over `current` in one rename(2), so `current` always exists. (`ln -sfn`
    straight onto `current` would unlink it first: a window with no site.) `target` is
    shell text: a quoted path, or `"$prev"` for the target read back from the host.
    """
    link = f"ln -sfn -- {target} {q(layout.current_tmp)}"
    return link, shlex.join(["mv", "-fT", "--", layout.current_tmp, layout.current])


def switch(layout: Layout, name: str) -> str:
    """`current` to release `name`, then `readlink` reports what is live, for the caller
    to verify. (go_live runs the same two halves, with the go signal between them.)"""
    readlink = shlex.join(["readlink", "--", layout.current])
    return " && ".join([switch_link(layout, name), switch_rename(layout), readlink])


def switch_link(layout: Layout, name: str) -> str:
    """First half of the swap to release `name`, which must be a directory."""
    return f"test -d {q(layout.release(name))} && {swap(layout, q(layout.current_target(name)))[0]}"


def switch_rename(layout: Layout) -> str:
    """Second half: one rename(2) of the temporary link over `current`."""
    return swap(layout, "")[1]


def switch_back(layout: Layout) -> str:
    """Put `current` back to `$prev` (read before the swap), or remove it if there was none."""
    link, rename = swap(layout, '"$prev"')
    return f'if [ -n "$prev" ]; then {link} && {rename}; else rm -f -- {q(layout.current)}; fi'


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


# --- rsync over the host's Fabric connection ------------------------------------------------

TUNNEL_ENV = "ATOMICDEPLOY_TUNNEL"


def tunnel_rsh() -> list[str]:
    """rsync's remote shell when the upload rides on the Fabric connection.

    The script comes from the environment (`tunnel_script`): rsync splits `--rsh` on
    spaces and quotes but takes no backslash, and the script needs one.
    """
    return ["sh", "-c", f'eval "${TUNNEL_ENV}"', "atomicdeploy-tunnel"]


def tunnel_script(from_host: int, to_host: int) -> str:
    """What rsync runs as its remote shell: a relay, run locally, with no login of its own.

    rsync starts it as `... HOST rsync --server ...`. The relay drops HOST, writes the
    argument count and the arguments, NUL-terminated, to the `to_host` pipe (the
    controller runs that command on a new channel of the SSH connection it already
    has), then carries bytes: rsync to `to_host` in the background, `from_host` to
    rsync until the host's side ends; then it stops the other `cat` and exits, as
    ssh does when the remote command ends (rsync waits for its remote shell to exit).
    A background command's stdin is /dev/null in sh, hence the saved copy of stdin;
    `/dev/fd/N` because sh redirections take one digit only.
    """
    frm, to = int(from_host), int(to_host)
    saved = next(n for n in range(3, 10) if n not in (frm, to))
    return (
        f'shift; printf "%s\\0" "$#" "$@" > /dev/fd/{to} || exit 255;'
        f" exec {saved}<&0; cat <&{saved} > /dev/fd/{to} 2>/dev/null & exec {saved}<&-;"
        f" cat /dev/fd/{frm} 2>/dev/null; kill $! 2>/dev/null; exit 0"
    )


def rsync_exact_times(version_line: str) -> bool:
    """Whether this rsync (its `--version` first line) compares mtimes to the nanosecond.

    By default rsync's quick check compares whole seconds: a file changed within the
    second of the previous upload, at the same size, would be skipped and the release
    would keep the old content. `--modify-window=-1` (rsync 3.2.1+) compares
    nanoseconds; an older rsync gets `--checksum` instead (reads every file: slower).
    """
    match = re.search(r"version v?(\d+)\.(\d+)\.(\d+)", version_line)
    return bool(match) and tuple(int(g) for g in match.groups()) >= (3, 2, 1)


def rsync_argv(
    source: str,
    host: str,
    release_path: str,
    *,
    ssh: Sequence[str],
    exclude: Sequence[str] = (),
    copy_dest: str | None = None,
    hardlinks: bool = False,
    timeout: int = 0,
    exact_times: bool = True,
) -> list[str]:
    """rsync `source` into a new release, incrementally.

    `--copy-dest` makes rsync copy unchanged files from the live release on the
    host itself, so only changed files cross the network; unlike `--link-dest`,
    the new release shares no inode with the live one, so a build hook that edits
    a file in place (composer's autoloader, a framework's config cache) cannot
    change what is being served. `hardlinks=True` uses `--link-dest`: no file data
    is copied on the host (6x faster here), for builds that never edit in place.
    """
    argv = [
        "rsync",
        "--archive",
        "--delete",
        "--delete-excluded",
        "-s",  # protect args from the remote shell (paths with spaces)
        "--stats",
        "--rsh",
        shlex.join(ssh),
    ]
    # Same size and same second is not "unchanged" (see rsync_exact_times).
    argv.append("--modify-window=-1" if exact_times else "--checksum")
    if timeout:
        argv.append(f"--timeout={int(timeout)}")  # a stalled transfer ends, it does not hang
    for pattern in exclude:
        argv += ["--exclude", pattern]
    if copy_dest:
        argv += ["--link-dest" if hardlinks else "--copy-dest", copy_dest]
    src = source if source.endswith("/") else source + "/"
    host_part = f"[{host}]" if ":" in host else host
    argv += ["--", src, f"{host_part}:{release_path}/"]
    return argv


# --- hooks: the user's own shell, in the release directory ----------------------------------


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


# --- nginx, opcache, warm-up, health: what makes the switch reach php-fpm ------------------

WARN_MARKER = "@@ad:warn="
ARMED_MARKER = "@@ad:armed"
SWITCHED_MARKER = "@@ad:switched="
OPCACHE_OK = "atomicdeploy:opcache-reset:ok"
# Characters nginx takes literally in an unquoted `set` value (no spaces, `$`, `;`, quotes).
NGINX_SAFE_PATH = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-+@%:,=~"
)


# The only statement the generated include may hold: `set $name value;`, one per line,
# the value a plain token. root's nginx parses this file, which the deploy user writes:
# an `include`, `access_log`, `ssl_certificate` or `load_module` line would make root's
# nginx open a path of the deploy user's choosing (and `nginx -t` prints what it read).
_NGINX_SET = re.compile(
    r"[ \t]*set[ \t]+\$[A-Za-z_][A-Za-z0-9_]*[ \t]+[^\s;'\"{}$#\\]+[ \t]*;[ \t]*"
)


def nginx_set_only(text: str) -> str | None:
    """Why `text` is not a `set`-only include (the first offending line), or None."""
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip(" \t")
        if stripped and not stripped.startswith("#") and not _NGINX_SET.fullmatch(line):
            return f"line {number} is not a single `set $name value;`: {line.strip()[:60]!r}"
    return None


def write_if_changed(path: str, content: str) -> str:
    """Write `path` atomically (temp file + mv) unless it already holds `content`.

    The previous file is kept as `<path>.prev` so a failed `nginx -t` can put it back.
    Prints `changed` or `unchanged`.
    """
    tmp, prev = f"{path}.tmp", f"{path}.prev"
    # `$(cat)` drops trailing newlines: compare, and write, the content without them.
    content = content.rstrip("\n")
    return (
        f"if [ -f {q(path)} ] && [ \"$(cat -- {q(path)})\" = {q(content)} ]; then echo unchanged;"
        f" else printf '%s\\n' {q(content)} > {q(tmp)}"
        f" && {{ [ ! -e {q(path)} ] || cp -p -- {q(path)} {q(prev)}; }}"
        f" && mv -f -- {q(tmp)} {q(path)} && echo changed; fi"
    )


def restore_previous(path: str) -> str:
    prev = f"{path}.prev"
    return f"if [ -e {q(prev)} ]; then mv -f -- {q(prev)} {q(path)}; else rm -f -- {q(path)}; fi"


def nginx_check(public_path: str, root_file: str, content: str, test: str) -> str:
    """Prepare phase: the public dir exists and `nginx -t` accepts the new include.

    nginx only reads the include on reload, so it is written, tested and put back
    at once: nothing is served from it yet. (`nginx -t` alone accepts a root that
    does not exist, hence the `test -d`.)
    """
    return (
        f"test -d {q(public_path)} || {{ {say('public directory missing: ' + public_path)} >&2;"
        f" exit 1; }}; state=$({write_if_changed(root_file, content)}) || exit 1;"
        f" if [ \"$state\" = changed ]; then out=$( ({test}) </dev/null 2>&1); rc=$?;"
        f" {restore_previous(root_file)};"
        f" if [ $rc != 0 ]; then printf '%s\\n' \"$out\" | tail -n 3 >&2;"
        f" echo 'nginx test failed with the new include' >&2; exit $rc; fi; fi"
    )


def nginx_reload_and_wait(reload: str, pid_file: str, timeout: int) -> str:
    """Reload nginx and return only when its old workers have exited.

    `nginx -s reload` returns before the old workers stop serving the old root
    (keep-alive connections included). The deploy user cannot signal www-data's
    workers, but can read /proc: note the master's children before the reload,
    then wait until none of them is still its child. A timeout is a warning.
    """
    warn = q(f"{WARN_MARKER}old nginx workers still running {timeout}s after the reload")
    return (
        f"master=$(cat -- {q(pid_file)} 2>/dev/null);"
        " old=''; if [ -n \"$master\" ]; then"
        " old=$(cat /proc/$master/task/$master/children 2>/dev/null); fi;"
        f" ({reload}) </dev/null || exit $?;"
        " if [ -z \"$master\" ]; then"
        f" {say(WARN_MARKER + 'nginx pid file ' + pid_file + ' not readable: not waiting')};"
        f" else deadline=$(( $(date +%s) + {int(timeout)} ));"
        " for p in $old; do"
        " while [ \"$(cut -d' ' -f4 /proc/$p/stat 2>/dev/null)\" = \"$master\" ]; do"
        f" if [ $(date +%s) -ge $deadline ]; then echo {warn}; break 2; fi; sleep 0.05;"
        " done; done; fi"
    )


def _fcgi_env(socket: str, script: str, uri: str, document_root: str) -> str:
    path, _, query = uri.partition("?")
    env = {
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": "/" + script.rsplit("/", 1)[-1],
        "REQUEST_URI": uri,
        "DOCUMENT_URI": path,
        "QUERY_STRING": query,
        "DOCUMENT_ROOT": document_root,
        "REQUEST_METHOD": "GET",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REDIRECT_STATUS": "200",
    }
    pairs = " ".join(q(f"{k}={v}") for k, v in env.items())
    return f'env -i PATH="$PATH" {pairs} cgi-fcgi -bind -connect {q(socket)}'


def fcgi_status(socket: str, script: str, uri: str, document_root: str) -> str:
    """One FastCGI request to php-fpm (as cachetool makes); fail unless the status is 2xx."""
    what = q(f"warm-up {uri}")
    return (
        f"out=$({_fcgi_env(socket, script, uri, document_root)} </dev/null 2>&1)"
        f" || {{ echo {what}\": cannot reach php-fpm at \"{q(socket)} >&2; exit 1; }};"
        " status=$(printf '%s\\n' \"$out\" | tr -d '\\r' | awk '/^$/{exit} /^Status:/{print $2; exit}');"  # noqa: E501
        " case \"${status:-200}\" in 2??) ;;"
        f" *) echo {what}\" answered $status\" >&2; exit 1;; esac"
    )


def opcache_reset(strategy: str, *, socket: str = "", dep_dir: str = "", token: str = "",
                  cachetool: str = "", url: str = "", reload: str = "") -> str | None:  # fmt: skip
    """Clear php-fpm's opcache; a failure prints a warning marker (the release is live)."""
    if strategy == "none":
        return None
    if strategy == "fcgi":
        script = f"{dep_dir}/opcache-reset-{token}.php"
        php = (f"<?php echo function_exists('opcache_reset') && opcache_reset()"
               f" ? '{OPCACHE_OK}' : 'opcache_reset() failed or opcache is off';")  # fmt: skip
        work = (
            f"printf '%s\\n' {q(php)} > {q(script)} && chmod 644 -- {q(script)}"
            f" && out=$({_fcgi_env(socket, script, '/', dep_dir)} </dev/null 2>&1);"
            f" rm -f -- {q(script)};"
            f" case \"$out\" in *{OPCACHE_OK}*) ;;"
            " *) printf '%s\\n' \"$out\" | tr -d '\\r' | tail -n 1; exit 1;; esac"
        )
    elif strategy == "cachetool":
        work = f"out=$({cachetool} opcache:reset {q('--fcgi=' + socket)} </dev/null 2>&1) || {{ printf '%s\\n' \"$out\" | tail -n 1; exit 1; }}"  # noqa: E501
    elif strategy == "http":
        work = f"out=$({curl_url(url)} | curl -fsS --max-time 10 -K - 2>&1) || {{ printf '%s\\n' \"$out\" | tail -n 1; exit 1; }}"  # noqa: E501
    elif strategy == "fpm-reload":
        work = f"out=$( ({reload}) </dev/null 2>&1) || {{ printf '%s\\n' \"$out\" | tail -n 1; exit 1; }}"  # noqa: E501
    else:
        raise ValueError(f"unknown opcache strategy {strategy!r}")
    warn = q(f"{WARN_MARKER}opcache reset ({strategy}) failed: ")
    return f"msg=$( ( {work} ) 2>&1 ) || echo {warn}\"$(printf '%s' \"$msg\" | tail -n 1)\""


def health_check(url: str, status: int, contains: str, timeout: int) -> str:
    """Request `url` on the host; fail unless the status is right and `contains` appears
    in the response (headers or body: `curl -i`)."""
    check_body = (
        f" printf '%s' \"$out\" | grep -qF -- {q(contains)} ||"
        f" {{ {say('health check: the response lacks ' + repr(contains))} >&2; exit 1; }};"
        if contains else ""
    )  # fmt: skip
    return (
        f"out=$({curl_url(url)} | curl -sS -i --max-time {int(timeout)} -w '\\n%{{http_code}}'"
        " -K - 2>&1)"
        f" || {{ echo \"health check: $(printf '%s' \"$out\" | tail -n 1)\" >&2; exit 1; }};"
        " code=$(printf '%s\\n' \"$out\" | tail -n 1);"
        f" [ \"$code\" = {int(status)} ] || {{ printf '%s answered %s, expected %s\\n'"
        f" {q('health check: ' + redact_url_passwords(url))} \"$code\" {int(status)} >&2;"
        f" exit 1; }};{check_body}"
    )


def curl_url(url: str) -> str:
    """Print a curl config line naming `url`, for `curl -K -` to read from its stdin.

    A URL on curl's command line, password included, is readable by every user of the
    host in `ps`; `printf` is a shell builtin, so this line starts no process at all.
    """
    if any(c in url for c in "\r\n\0"):
        raise ValueError("a URL must not contain line breaks or NUL")
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    line = 'url = "' + escaped + '"'
    return f"printf '%s\\n' {q(line)}"


def go_live(
    layout: Layout,
    release: str,
    *,
    log_lines: Sequence[str] = (),
    nginx: tuple[str, str, str, str] | None = None,
    opcache: str | None = None,
    armed: bool = False,
) -> str:
    """Everything that makes a release live on one host, in one round trip.

    1. switch `current` (the one swap primitive); 2. with `nginx=(root_file,
    content, test, reload_and_wait)`: write the include, `nginx -t`, reload and
    wait for the old workers; if nginx refuses, the include and `current` are put
    back and the host stays on its old release; 3. log; 4. clear the opcache (a
    failure is a warning: the release is live). The last line printed is what
    `current` points to.

    With `armed`, the script says so and waits for `go` on stdin just before the
    rename: the controller fires every host at once when all are armed, so the
    switch skew is one write per host, not a shell start and a round trip.
    """
    cur = q(layout.current)
    revert = switch_back(layout)
    lines = [f"prev=$(readlink -- {cur} 2>/dev/null)"]
    # The swap's two halves, so that only the rename follows `go`.
    lines.append(sequence([("switch", switch_link(layout, release))]))
    if armed:
        lines.append(f"echo {ARMED_MARKER}; IFS= read -r go || exit 90;"
                     ' [ "$go" = go ] || exit 91')  # fmt: skip
    marker = q(STEP_MARKER + "switch")
    lines.append(f"{switch_rename(layout)} || {{ rc=$?; echo {marker} >&2; exit $rc; }}")
    # The host's own clock right after the rename: the fleet's switch skew is measured from it.
    lines.append(f"echo {SWITCHED_MARKER}$(date +%s.%N)")
    if nginx:
        root_file, content, test, reload_and_wait = nginx
        marker = q(STEP_MARKER + "nginx")
        lines.append(started("nginx"))
        lines.append(
            f"state=$({write_if_changed(root_file, content)}) || {{ {revert}; echo {marker} >&2;"
            " exit 1; }"
        )
        lines.append(
            f'if [ "$state" = changed ]; then'
            f" out=$( ({test}) </dev/null 2>&1) || {{ rc=$?; {restore_previous(root_file)};"
            f" {revert}; printf '%s\\n' \"$out\" | tail -n 3 >&2;"
            f" echo 'nginx test failed: the include and current were put back' >&2;"
            f" echo {marker} >&2; exit $rc; }};"
            f" ( {reload_and_wait} ) || {{ rc=$?; {restore_previous(root_file)}; {revert};"
            f" echo 'nginx reload failed: the include and current were put back' >&2;"
            f" echo {marker} >&2; exit $rc; }}; fi"
        )
    lines.extend(sequence([("log", append_log(layout, line))]) for line in log_lines)
    if opcache:
        lines.append(started("opcache"))
        lines.append(opcache)
    lines.append(f"readlink -- {cur}")
    return "\n".join(lines)
