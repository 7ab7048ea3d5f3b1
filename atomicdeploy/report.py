"""What the user sees: per-host progress, tables and the final summary.

One Reporter per run, passed in; its lock keeps lines from different host
threads whole. On a terminal, progress is a live table (one row per host, redrawn
in place); otherwise (CI, pipes) it is plain `[host] message` lines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

# Text from hosts (release directory names, a lock's owner, stderr lines) is printed; a
# terminal would obey the control characters in it: ESC]0;...BEL retitles the window,
# ESC[2J clears the screen, \r overwrites what was said, a bidi override (a format
# character, which Python counts as not printable) reverses it. A newline inside what is
# meant as one line (an error, a warning, a table cell) would print a line of the host's
# choosing, e.g. a forged "[web2] live: ..." after a lock owner's name. So every line goes
# out through one of these three, after the secrets are masked.


def printable(text: str, keep: str = "\n\t") -> str:
    """`text` with control characters shown as escapes (`\\x1b`), except those in `keep`.

    Tabs are kept by default: a tab only moves the cursor on to the next tab stop, so it can
    neither hide nor overwrite anything, and compilers and stack traces indent with it.
    """
    if text.isprintable():  # the usual case: nothing to escape
        return text
    return "".join(_escape(c, keep) for c in text)


def one_line(text: str) -> str:
    """`text` as one printed line: newlines escaped too (tabs kept)."""
    return printable(text, keep="\t")


def cell(text: str) -> str:
    """A table cell: tabs escaped as well, since they would break the columns."""
    return printable(text, keep="")


def _escape(c: str, keep: str) -> str:
    if c in keep or c.isprintable():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def wants_live(stream: TextIO) -> bool:
    """A live table only on a real terminal, never in CI or with TERM=dumb."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") not in ("", "dumb") and not os.environ.get("CI")


def _as_is(text: str) -> str:
    return text


class Reporter:
    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        live: bool | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self.out = out or sys.stdout
        # Every line is masked (secrets -> ***), then escaped (one_line, cell) before it is
        # printed; `mask` does both, for one-line texts (also the notifier's).
        self._secrets = mask or _as_is
        self.err = err or sys.stderr
        self._lock = threading.Lock()
        self.live = wants_live(self.out) if live is None else live
        self._rows: dict[str, list[str]] = {}  # host -> [phase, state, last message]
        self._drawn = 0
        self._last_draw = 0.0
        self._held: list[tuple[TextIO, str]] = []  # lines printed after the live table ends

    def mask(self, text: str) -> str:
        return one_line(self._secrets(text))

    def _write(self, stream: TextIO, text: str) -> None:
        """One line: a newline inside it is data (see one_line), never a line of its own."""
        self._emit(stream, self.mask(text))

    def _emit(self, stream: TextIO, text: str) -> None:
        """Print `text`, already masked and escaped (or hold it while the live table is up)."""
        with self._lock:
            if self.live and self._rows:
                self._held.append((stream, text))
                return
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()

    # --- progress ------------------------------------------------------------------------------
    def progress(self, host: str, phase: str, state: str) -> None:
        """A host entered or left a phase; redraws the live table (plain mode: nothing)."""
        if not self.live:
            return
        with self._lock:
            row = self._rows.setdefault(host, ["", "", ""])
            row[0], row[1] = phase, self.mask(state)
            self._redraw(force=state != "running")

    def end_progress(self) -> None:
        """Draw the table one last time, then print what was held back."""
        if not self.live:
            return
        with self._lock:
            self._redraw(force=True)
            self._rows.clear()
            self._drawn = 0
            held, self._held = self._held, []
        for stream, text in held:
            self._emit(stream, text)

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        rows = [[h, *r] for h, r in self._rows.items()]
        lines = render_table(["host", "phase", "state", "last"], rows).splitlines()
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the table's first line
        for line in lines:
            self.out.write(f"\x1b[2K{line}\n")
        self._drawn = len(lines)
        self.out.flush()

    # --- lines -----------------------------------------------------------------------------------
    def host(self, name: str, message: str) -> None:
        if self.live and name in self._rows:
            with self._lock:
                last = self.mask(message.splitlines()[-1]) if message else ""
                self._rows[name][2] = last[:60]
                self._redraw()
            return
        # Each line of a multi-line message (a hook's output) gets the host's prefix.
        lines = self._secrets(message).splitlines()
        self._emit(self.out, "".join(f"{one_line(f'[{name}] {line}')}\n" for line in lines))

    def warn(self, name: str | None, message: str) -> None:
        prefix = f"[{name}] " if name else ""
        self._write(self.err, f"{prefix}warning: {message}")

    def line(self, message: str = "") -> None:
        self._write(self.out, message)

    def error(self, message: str) -> None:
        self._write(self.err, message)

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  "
    ) -> None:
        masked = [[self._secrets(str(c)) for c in r] for r in rows]
        self._emit(self.out, render_table(header, masked, indent))


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Aligned columns; each cell escaped first (see cell), so widths are what is shown."""
    cells = [[cell(str(c)) for c in r] for r in (header, *rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]
    return "\n".join(lines) + "\n"
