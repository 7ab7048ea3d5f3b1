"""Dry run: what a deploy or rollback would do, with nothing changed anywhere.

Each host's Remote records every command that would change something (`Remote.dry`);
read-only commands (the state) really run. This module makes the run leave no trace
on this machine either, and prints what was recorded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace

from .inventory import HostConfig
from .report import Reporter
from .runner import Fleet


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
        steps = list(remote.recorded) if remote else []
        planned[name] = steps
        reporter.line(f"[{name}] {len(steps)} command(s):")
        for step, text in steps:
            reporter.line(f"  # {step}")
            for line in text.splitlines():
                reporter.line(f"    {line}")
    return planned
