"""The upload: rsync's argv, and its remote shell riding on the host's Fabric connection."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

TUNNEL_ENV = "ATOMICDEPLOY_TUNNEL"


def tunnel_rsh() -> list[str]:
    """rsync's remote shell when the upload rides on the Fabric connection.

    The script comes from the environment (`tunnel_script`): rsync splits `--rsh` on
    spaces and quotes but takes no backslash, and the script needs one.
    """
    return ["sh", "-c", f'eval "${TUNNEL_ENV}"', "atomicdeploy-tunnel"]


def server_command(args: list[str]) -> str:
    """The command line the host runs for the rsync server our tunnel carries: the words
    rsync asked for, each quoted (a path with spaces or `$(...)` stays one word)."""
    return shlex.join(args)


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
