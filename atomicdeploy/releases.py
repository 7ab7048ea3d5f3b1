"""Release names and the releases log: parse, render, decide. Pure.

The log (`.dep/releases.log`) is append-only JSON lines, one per state change.
A release's state is its last line. Rollback and cleanup decide from these states
(never from directory mtimes), so a half-built release is never mistaken for a good one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .adopt import Foreign, order
from .adopt import parse as parse_foreign

BUILDING = "building"
COMPLETE = "complete"
LIVE = "live"
FAILED = "failed"
ROLLED_BACK = "rolled back"
STATES = (BUILDING, COMPLETE, LIVE, FAILED, ROLLED_BACK)
# States of a release that was fully built and may be switched to.
GOOD = (COMPLETE, LIVE)

NAME_FORMAT = "%Y%m%dT%H%M%SZ"


def new_release_name(now: datetime, taken: Iterable[str] = (), tag: str = "") -> str:
    """A sortable UTC name, computed once on the controller for every host.

    If a host already has that name (two deploys in the same second), a two-digit
    suffix keeps names unique and still sorted. A version `tag` (`v1.2.3`)
    is appended after the time, so names still sort by time.
    """
    base = now.astimezone(UTC).strftime(NAME_FORMAT)
    if tag:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", tag):
            raise ValueError(f"tag {tag!r} cannot be part of a release name")
        base = f"{base}-{tag}"
    taken = set(taken)
    if base not in taken:
        return base
    for n in range(1, 100):
        name = f"{base}.{n:02d}"
        if name not in taken:
            return name
    raise ValueError(f"no free release name for {base}")


@dataclass(frozen=True)
class LogEntry:
    release: str
    state: str
    time: str
    user: str = ""
    revision: str = ""
    note: str = ""

    def render(self) -> str:
        data = {"release": self.release, "state": self.state, "time": self.time}
        for key in ("user", "revision", "note"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return json.dumps(data, sort_keys=True, ensure_ascii=True)


def parse_log(text: str) -> list[LogEntry]:
    """Parse the log, skipping lines a crash may have left torn."""
    entries = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            entries.append(
                LogEntry(
                    release=str(data["release"]),
                    state=str(data["state"]),
                    time=str(data.get("time", "")),
                    user=str(data.get("user", "")),
                    revision=str(data.get("revision", "")),
                    note=str(data.get("note", "")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return entries


@dataclass(frozen=True)
class ReleaseInfo:
    """What one host knows about one release directory."""

    name: str
    state: str  # last state in the log, or "unknown" for a directory the log never saw
    revision: str = ""
    user: str = ""
    created: str = ""
    live: bool = False

    @property
    def good(self) -> bool:
        return self.state in GOOD


def fold(
    names_on_disk: Iterable[str],
    entries: Iterable[LogEntry],
    current: str | None,
    foreign: Foreign | None = None,
):
    """Join the directories on a host with their logged states, oldest first. A directory
    our log never saw that another tool made (`foreign`) is taken over as complete."""
    foreign = foreign or Foreign()
    last: dict[str, LogEntry] = {}
    first: dict[str, LogEntry] = {}
    revision: dict[str, str] = {}
    for entry in entries:
        last[entry.release] = entry
        first.setdefault(entry.release, entry)
        if entry.revision:
            revision[entry.release] = entry.revision
    infos = []
    for name in sorted(set(names_on_disk), key=order):
        entry = last.get(name)
        if entry is None and foreign.adopts(name):
            infos.append(_adopted(name, current, foreign))
            continue
        state = entry.state if entry else "unknown"
        if state == LIVE and name != current:
            state = COMPLETE  # was live once, superseded since
        if name == current and state in GOOD:
            state = LIVE
        infos.append(
            ReleaseInfo(
                name=name,
                state=state,
                revision=revision.get(name, ""),
                user=first[name].user if name in first else "",
                created=first[name].time if name in first else "",
                live=name == current,
            )
        )
    return infos


def _adopted(name: str, current: str | None, foreign: Foreign) -> ReleaseInfo:
    """Another tool's release: complete, or rolled back from if it marked it bad."""
    info = foreign.info(name)
    state = ROLLED_BACK if name in foreign.bad else LIVE if name == current else COMPLETE
    return ReleaseInfo(name, state, info.revision, info.user, info.created, name == current)


def rollback_target(infos: list[ReleaseInfo], current: str | None) -> str | None:
    """The newest good release older than the live one (Deployer skips bad ones too)."""
    older = [
        i
        for i in infos
        if i.good and not i.live and (current is None or order(i.name) < order(current))
    ]
    return older[-1].name if older else None


def cleanup_victims(infos: list[ReleaseInfo], keep: int, current: str | None) -> list[str]:
    """Releases cleanup may delete.

    Keeps the newest `keep` good releases, the live one and the rollback target
    whatever `keep` says; deletes failed, rolled-back and stale half-built ones.
    Directories the log never saw are left alone: somebody else put them there.
    """
    protected = {current, rollback_target(infos, current)}
    good = [i.name for i in infos if i.good]
    protected.update(good[-keep:] if keep > 0 else good)
    victims = []
    for info in infos:
        if info.name in protected or info.state == "unknown":
            continue
        victims.append(info.name)
    return victims


@dataclass(frozen=True)
class HostState:
    """What `shell.read_state` reports about a host."""

    current: str | None  # name of the live release, or None
    releases: tuple[ReleaseInfo, ...]
    lock_owner: str | None  # raw owner record, if a lock is held
    entries: tuple[LogEntry, ...] = ()
    rsync: str = ""  # first line of the host's `rsync --version`, if it has rsync
    foreign: Foreign = field(default_factory=Foreign)  # another tool's history on its host
    deploy_path: str = ""  # as the run found it (a `~/` path made absolute)

    def get(self, name: str) -> ReleaseInfo | None:
        return next((r for r in self.releases if r.name == name), None)


def parse_state(text: str, markers: tuple[str, ...]) -> HostState:
    sections: dict[str, list[str]] = {m: [] for m in markers}
    where: str | None = None
    # Split on "\n" only: `find` ends each name with it, and a name holding "\r", "\x1e" or
    # "\u2028" (which splitlines() also splits on) is one directory, not two.
    for line in text.split("\n"):
        if line in sections:
            where = line
        elif where is not None:
            sections[where].append(line)
    cur, rel, log, lock, rsync, other = markers
    target = next((ln for ln in sections[cur] if ln.strip()), "")
    current = target.rstrip("/").rsplit("/", 1)[-1] if target else None
    entries = parse_log("\n".join(sections[log]))
    names = [n for n in sections[rel] if n and n not in (".", "..")]
    owner = "\n".join(sections[lock]).strip() or None
    foreign = parse_foreign(sections[other])
    return HostState(
        current=current,
        releases=tuple(fold(names, entries, current, foreign)),
        lock_owner=owner,
        entries=tuple(entries),
        rsync=next((ln.strip() for ln in sections[rsync] if ln.strip()), ""),
        foreign=foreign,
    )
