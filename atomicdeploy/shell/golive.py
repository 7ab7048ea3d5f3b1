"""Going live: the one swap primitive, and go-live's single round trip around it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..layout import Layout
from .core import ARMED_MARKER, STEP_MARKER, SWITCHED_MARKER, sequence, started
from .state import append_log
from .web import restore_previous, write_if_changed

q = shlex.quote


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


def wait_for_go() -> str:
    """Say the script is armed, then wait for the fleet's go signal on stdin; anything but
    `go` ends the script (91: told no; 90: stdin closed)."""
    return f'echo {ARMED_MARKER}; IFS= read -r go || exit 90; [ "$go" = go ] || exit 91'


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
    # What `current` was, for the switch back if nginx refuses the release (read only
    # then: a host without nginx has nothing to switch back from).
    lines = [f"prev=$(readlink -- {cur} 2>/dev/null)"] if nginx else []
    # The swap's two halves, so that only the rename follows `go`.
    lines.append(sequence([("switch", switch_link(layout, release))]))
    if armed:
        lines.append(wait_for_go())
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
