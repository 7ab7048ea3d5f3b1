"""A command of the user's in the live release (`fab STAGE run`), its output line by line."""

from __future__ import annotations

import io
from collections.abc import Callable

from .. import shell
from ..config import Config
from ..remote import Remote

ANY_STATUS = tuple(range(256))


class _Lines(io.TextIOBase):
    """A stream that hands each complete line to `say` as it arrives."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say, self.pending = say, ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.say(line)
        return len(text)

    def flush_rest(self) -> None:
        if self.pending:
            self.say(self.pending)
            self.pending = ""


def run(remote: Remote, cfg: Config, command: str) -> int:
    """Run `command` in `current`; its output goes to `remote.out` as it comes. Returns its
    exit status (any status: the caller decides what a failure is)."""
    lines = _Lines(remote.out)
    script = shell.in_current(cfg.layout.current, command)
    status, _ = remote.run(script, "run", ok=ANY_STATUS, out=lines)
    lines.flush_rest()
    return status
