"""What a command prints, taken as it comes: each stream's tail kept, echoed, watched.

Used by connection._Runner, which reads a command's stdout and stderr in one thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO

from invoke.runners import Runner

from .shell import NEXT_MARKER

# What is kept of each stream of one command: its tail. A hook that prints without end
# (a verbose build, a `tail -f` left in by mistake) must not fill the controller's memory;
# the markers the callers look for are at the end.
OUTPUT_CAP = 1 << 20


class SetOnly:
    """Stands for an event on one of a channel's buffers: sets the shared one when data
    or the end arrives, never clears it (the reader does, see connection._Runner._read_both)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def set(self) -> None:
        self.event.set()

    def clear(self) -> None:
        pass


class Output:
    """One stream of a command: echoed unless hidden, only its tail kept (OUTPUT_CAP;
    the markers callers look for are at its end), shown to a Python hook's watchers, and
    on a script that asks for its next half, watched for that (`asking`)."""

    def __init__(
        self,
        runner: Runner,
        buffer_: list[str],
        hide: bool,
        output: IO[str],
        asking: Asking | None,
    ) -> None:
        self.runner, self.buffer, self.hide, self.output = runner, buffer_, hide, output
        self.asking = asking
        self.kept = 0

    def take(self, data: str) -> None:
        if self.asking is not None and self.asking.sent(data):
            self.asking = None
        if not self.hide:
            self.runner.write_our_output(stream=self.output, string=data)
        self.buffer.append(data)
        self.kept += len(data)
        while self.kept > OUTPUT_CAP and len(self.buffer) > 1:
            self.kept -= len(self.buffer.pop(0))
        if self.runner.watchers:  # a Python hook's `c.run(..., watchers=[Responder(...)])`
            self.runner.respond(self.buffer)


class Asking:
    """Watches a script's stdout for its NEXT_MARKER line (shell.then_next), then sends
    it the next script: `reply` gets what the script printed before asking. Runs in the
    thread that reads the command's output, on each chunk as it comes; paramiko's sends
    are locked."""

    MARK = f"\n{NEXT_MARKER}\n"

    def __init__(self, reply: Callable[[str], bytes], send: Callable[[bytes], None]) -> None:
        self.reply, self.send = reply, send
        self.printed: list[str] = []
        self.tail = "\n"  # the marker's line may be the first line

    def sent(self, data: str) -> bool:
        """Take one chunk of stdout; True once the next script was sent."""
        self.printed.append(data)
        seen = self.tail + data
        self.tail = seen[-len(self.MARK) :]
        if self.MARK not in seen:
            return False
        text = "".join(self.printed)
        self.send(self.reply(text[: ("\n" + text).find(self.MARK)]))
        return True
