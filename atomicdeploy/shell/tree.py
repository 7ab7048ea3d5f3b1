"""Release trees: create, fill, flush, remove; shared links; writable dirs."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..layout import Layout, check_relative_path
from .core import REFUSED, SHARED_MISSING, say
from .state import append_log

q = shlex.quote


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
    return (
        f"{{ out=$(sync -f -- {q(path)} 2>&1) || case $out in *option*) sync ;;"
        " *) printf '%s\\n' \"$out\" >&2; false ;; esac; }"
    )


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
    return shlex.join(
        [
            "cp",
            "-a",
            "--no-preserve=xattr,context",
            "--",
            layout.upload_cache + "/.",
            layout.release(name) + "/",
        ]
    )


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
    http_group: str = "",
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
    owner = http_group if mode in ("chgrp", "sticky") else http_user
    change = _writable_change(mode, chmod_mode, owner, recursive, use_sudo)
    parts = []
    for item in dirs:
        base, rel = _writable_home(layout, name, item, shared_dirs)
        parts.append(_in_verified_dir(base, rel, item, change))
    return " && ".join(parts)


def _writable_change(
    mode: str, chmod_mode: str, http_user: str, recursive: bool, use_sudo: bool
) -> str:
    """The command that changes `.`: its walk never follows a link (chmod never does).
    For chgrp and sticky, `http_user` is the web server's group."""
    rec = ["-R"] if recursive else []
    physical = ["-R", "-P"] if recursive else []
    # `sudo -n` fails at once instead of prompting for a password nobody can type.
    sudo = ["sudo", "-n"] if use_sudo else []
    if mode == "chmod":
        return shlex.join(["chmod", *rec, chmod_mode, "--", "."])
    if mode == "chown":
        return shlex.join([*sudo, "chown", *physical, http_user, "--", "."])
    if mode in ("chgrp", "sticky"):
        return _group_writable(mode, http_user, rec, physical, sudo)
    if mode == "acl":
        # The deploy user keeps access too; `$(id -un)` is expanded on the host on purpose.
        spec = q(f"u:{http_user}:rwX,u:") + '"$(id -un)"' + q(":rwX")
        flags = shlex.join(["setfacl", *physical])
        return f"{flags} -m {spec} -- . && {flags} -d -m {spec} -- ."
    raise ValueError(f"unknown writable mode {mode!r}")  # validated by the inventory


def _group_writable(
    mode: str, group: str, rec: list[str], physical: list[str], sudo: list[str]
) -> str:
    """Deployer's chgrp and sticky modes: the web server's group owns the dirs and may
    write; `sticky` also sets setgid on directories, so files made later get that group."""
    parts = [
        shlex.join([*sudo, "chgrp", *physical, group, "--", "."]),
        shlex.join([*sudo, "chmod", *rec, "g+rwX", "--", "."]),
    ]
    if mode == "sticky":
        depth = [] if rec else ["-maxdepth", "0"]
        find = ["find", ".", *depth, "-type", "d", "-exec", *sudo, "chmod", "g+s", "--", "{}", "+"]
        parts.append(shlex.join(find))
    return " && ".join(parts)


def _writable_home(
    layout: Layout, name: str, item: str, shared_dirs: Sequence[str]
) -> tuple[str, str]:
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
        f' for p in {names}; do at="$at/$p";'
        f' if [ -L "$p" ]; then printf \'%s\\n\' {refused}"$at"{link} >&2; exit {REFUSED}; fi;'
        ' { [ -d "$p" ] || mkdir -- "$p"; } && cd -P -- "$p" || exit 1; done;'
        f' [ "$(pwd -P)" = "$top"/{q(rel)} ] ||'
        f" {{ printf '%s\\n' {refused}\"$at\"{moved} >&2; exit {REFUSED}; }};"
        f" {command} )"
    )


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"
