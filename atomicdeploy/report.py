"""What the user sees: per-host prefixed lines, tables and the final summary.

One Reporter per run, passed in; its lock keeps lines from different host
threads whole.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TextIO


class Reporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._lock = threading.Lock()

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()

    def host(self, name: str, message: str) -> None:
        self._write(self.out, "".join(f"[{name}] {line}\n" for line in message.splitlines()))

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
        self._write(self.out, render_table(header, rows, indent))


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    cells = [list(map(str, header)), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]  # fmt: skip
    return "\n".join(lines) + "\n"
