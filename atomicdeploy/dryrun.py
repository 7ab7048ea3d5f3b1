"""Dry run: what a deploy or rollback would do, with nothing changed anywhere.

Each host's `DryRemote` records every command that would change something; read-only
commands (the state) really run. This module also makes the run leave no trace on this
machine (known_hosts), and prints what was recorded.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import IO, TYPE_CHECKING

from fabric import Connection

from .inventory import HostConfig
from .remote import Remote, RsyncStats
from .report import Reporter

if TYPE_CHECKING:
    from .runner import Fleet


class DryRemote(Remote):
    """A host's Remote that records what would change something and runs only what reads.

    Steps are the same in a dry run: they cannot tell this Remote from a real one, so
    the plan printed is what a real run sends, as sent.
    """

    def __init__(self, host: HostConfig, conn: Connection) -> None:
        super().__init__(host, conn)
        self.recorded: list[tuple[str, str]] = []

    def run(
        self,
        script: str,
        step: str,
        *,
        ok: tuple[int, ...] = (0,),
        attach: Callable[[Callable[[bytes], None]], None] | None = None,
        out: IO[str] | None = None,
        read_only: bool = False,
        stand_in: str | None = None,
        reply: Callable[[str], str] | None = None,  # never in a dry run (see goback.eligible)
    ) -> tuple[int, str]:
        if read_only:
            return super().run(script, step, ok=ok, attach=attach, out=out, read_only=True)
        self.recorded.append((step, script))
        if stand_in is None:
            return 0, ""
        return super().run(stand_in, step, ok=ok, read_only=True)

    def rsync(self, argv: list[str], step: str, timeout: float | None = None) -> RsyncStats:
        """Recorded, and run with `--dry-run`, which changes nothing and counts the files
        a real run would send."""
        self.recorded.append((step, shlex.join(argv)))
        return super().rsync([argv[0], "--dry-run", *argv[1:]], step, timeout)

    def call(self, step: str, what: str, fn: Callable[[], object]) -> None:
        self.recorded.append((step, f"python: {what}(c, cfg)"))


@contextlib.contextmanager
def hosts(configs: Sequence[HostConfig], dry: bool) -> Iterator[tuple[HostConfig, ...]]:
    """A dry run records no new host key: it works on a temporary copy of known_hosts."""
    if not dry:
        yield tuple(configs)
        return
    with tempfile.TemporaryDirectory(prefix="atomicdeploy-dry-") as tmp:
        copies: dict[str, str] = {}
        out = []
        for h in configs:
            real = os.path.expanduser(h.known_hosts)
            if real not in copies:
                copies[real] = os.path.join(tmp, f"known_hosts.{len(copies)}")
                if os.path.exists(real):
                    shutil.copyfile(real, copies[real])
            out.append(replace(h, known_hosts=copies[real]))
        yield tuple(out)


def print_plan(reporter: Reporter, fleet: Fleet) -> dict[str, list[tuple[str, str]]]:
    """Per host, every command and transfer the run would have made; returns them."""
    reporter.line("")
    reporter.line("dry run: these commands would have run; nothing was changed on any host")
    planned: dict[str, list[tuple[str, str]]] = {}
    for name in fleet.names:
        remote = fleet.peek(name)
        steps = list(remote.recorded) if isinstance(remote, DryRemote) else []
        planned[name] = steps
        reporter.line(f"[{name}] {len(steps)} command(s):")
        for step, text in steps:
            reporter.line(f"  # {step}")
            for line in text.splitlines():
                reporter.line(f"    {line}")
    return planned
