"""Hosts laid out by Deployer, Capistrano or ansistrano: their releases, taken over as they are.

Teams do not start on empty servers. Such a host has `releases/<name>` and a `current` link
like ours, and each tool keeps its own history: Deployer `.dep/releases_log` (JSON lines
`{created_at, release_name, user, target}`; names are integers; Deployer 6 kept
`.dep/releases`, lines `YYYYMMDDHHMMSS,name`) and a `BAD_RELEASE` file in a release it rolled
back from; Capistrano `revisions.log` ("Branch B (at SHA) deployed as release
T by USER"; names are 14-digit UTC timestamps); ansistrano only the timestamp names. A
release of theirs becomes a complete release of ours, with its time, user and revision from
that history, so the first deploy can be rolled back and cleanup counts it. Their files are
only read, never written. Pure: the host's answer is read by `shell.read_state`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# Deployer's release names are integers; Capistrano's 14-digit UTC timestamps; ansistrano's
# the same, often with a trailing Z. Ours: 20261203T101500Z, maybe .NN and -tag after.
_DEPLOYER = re.compile(r"[0-9]{1,9}")
_TIMESTAMP = re.compile(r"([0-9]{8})T?([0-9]{6})Z?")
_OURS = re.compile(r"([0-9]{8})T([0-9]{6})Z(.*)")
_CAPISTRANO_LINE = re.compile(
    r"Branch (?P<branch>\S+) \(at (?P<sha>\S+)\) deployed as release (?P<name>\S+) by (?P<user>.+)"
)
_SHA = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True)
class Adopted:
    """What another tool's history says about one of its releases."""

    created: str = ""
    user: str = ""
    revision: str = ""


@dataclass(frozen=True)
class Foreign:
    """Another tool's history on a host, by release name."""

    releases: dict[str, Adopted] = field(default_factory=dict)
    bad: frozenset[str] = frozenset()  # Deployer's BAD_RELEASE: never a rollback target
    revisions: dict[str, str] = field(default_factory=dict)  # REVISION files

    def adopts(self, name: str) -> bool:
        """A directory of another tool's: logged by Deployer, or named as Capistrano and
        ansistrano name releases (a timestamp with no `T`)."""
        return name in self.releases or (_TIMESTAMP.fullmatch(name) is not None and "T" not in name)

    def info(self, name: str) -> Adopted:
        known = self.releases.get(name, Adopted())
        created = known.created or _time_of(name)
        return Adopted(created, known.user, known.revision or self.revisions.get(name, ""))


def order(name: str) -> tuple[int, str | int, str]:
    """Sort key for release names of every kind: names of no known kind first (as the
    oldest: never kept in place of a real release), then Deployer's integers (older than
    any release made after the takeover), then every timestamp by its time, ours and
    Capistrano's and ansistrano's together."""
    if _DEPLOYER.fullmatch(name):
        return (0, int(name), "")
    ours = _OURS.fullmatch(name)
    if ours:
        return (1, ours.group(1) + ours.group(2), ours.group(3))
    stamp = _TIMESTAMP.fullmatch(name)
    if stamp:
        return (1, stamp.group(1) + stamp.group(2), "")
    return (-1, name, "")


def _time_of(name: str) -> str:
    stamp = _TIMESTAMP.fullmatch(name)
    if not stamp:
        return ""
    d, t = stamp.group(1), stamp.group(2)
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}Z"


def parse(lines: list[str]) -> Foreign:
    """The `read_state` section: `D <releases_log line>`, `S <Deployer 6 releases line>`,
    `C <revisions.log line>`,
    `B <name>/BAD_RELEASE`, `R releases/<name>/REVISION:<content>`."""
    releases: dict[str, Adopted] = {}
    bad: set[str] = set()
    revisions: dict[str, str] = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "D":
            _deployer(rest, releases)
        elif kind == "S":
            _deployer6(rest, releases)
        elif kind == "C":
            _capistrano(rest, releases)
        elif kind == "B" and rest.endswith("/BAD_RELEASE"):
            bad.add(rest[: -len("/BAD_RELEASE")])
        elif kind == "R":
            path, _, content = rest.partition("/REVISION:")
            if _SHA.fullmatch(content.strip()):
                revisions[path.rsplit("/", 1)[-1]] = content.strip()
    return Foreign(releases, frozenset(bad), revisions)


def _deployer(line: str, releases: dict[str, Adopted]) -> None:
    try:
        data = json.loads(line)
        name = str(data["release_name"])
    except (ValueError, KeyError, TypeError):
        return
    if _DEPLOYER.fullmatch(name) or _TIMESTAMP.fullmatch(name):
        releases[name] = Adopted(str(data.get("created_at", "")), str(data.get("user", "")))


def _deployer6(line: str, releases: dict[str, Adopted]) -> None:
    """Deployer 6's `.dep/releases`: `20190102100000,3` (its time, then the name)."""
    when, _, name = line.strip().partition(",")
    if _DEPLOYER.fullmatch(name) and name not in releases:
        releases[name] = Adopted(_time_of(when))


def _capistrano(line: str, releases: dict[str, Adopted]) -> None:
    match = _CAPISTRANO_LINE.fullmatch(line.strip())
    if match and _TIMESTAMP.fullmatch(match["name"]):
        releases[match["name"]] = Adopted(_time_of(match["name"]), match["user"], match["sha"])
