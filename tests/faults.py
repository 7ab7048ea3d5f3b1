"""The fault report: every fault and bad input the suite tries, with counts.

Tests call `record(...)`; at the end of the run the table is printed, written to
`.pytest_cache/fault-report.md`, and, with ATOMICDEPLOY_FAULT_REPORT=docs/faults.md (a path
relative to the repository), put into that file between its fault-report markers (how the
table in docs/faults.md is made).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START = "<!-- fault-report:start -->"
END = "<!-- fault-report:end -->"


@dataclass
class Row:
    area: str  # "fault", "bad input", "concurrency", ...
    what: str
    tries: int = 0
    violations: int = 0
    outcome: str = ""


_rows: dict[tuple[str, str], Row] = {}
_lock = threading.Lock()


def record(area: str, what: str, *, tries: int = 1, violations: int = 0, outcome: str) -> None:
    """Add `tries` tries (and their invariant violations) of one fault; same fault adds up."""
    with _lock:
        row = _rows.setdefault((area, what), Row(area, what))
        row.tries += tries
        row.violations += violations
        row.outcome = outcome


@contextmanager
def trying(area: str, what: str, outcome: str) -> Iterator[None]:
    """Count one try, and a violation if the body's property fails (its assert raises)."""
    ok = False
    try:
        yield
        ok = True
    finally:
        record(area, what, violations=0 if ok else 1, outcome=outcome)


def table() -> str:
    rows = sorted(_rows.values(), key=lambda r: (r.area, r.what))
    lines = [
        "| area | fault or input | tries | invariant violations | what happened |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.area} | {r.what} | {r.tries} | {r.violations} | {r.outcome} |" for r in rows]
    return "\n".join(lines) + "\n"


def has_rows() -> bool:
    return bool(_rows)


def write_into(doc: Path, text: str) -> None:
    """Replace what is between the markers of `doc` (docs/faults.md) by `text`."""
    content = doc.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"{doc}: no {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{text}{END}{tail}")
