"""The invariants every fault test checks on every host.

`current` points to an existing release whose last logged state is live or complete;
no lock is left; what the test put in `shared/` is still there. The next deploy
succeeding is checked by the tests themselves.
"""

from __future__ import annotations

SENTINEL = "user-upload.jpg"


def plant_sentinels(project) -> None:
    for h in project.hosts:
        shared = project.deploy_path(h.name) / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        (shared / SENTINEL).write_text(f"kept {h.name}")


def violations(project, *, lock_expected: bool = False, sentinels: bool = True) -> list[str]:
    found = []
    for h in project.hosts:
        name = h.name
        cur = project.current(name)
        if cur is None:
            found.append(f"{name}: no current")
        else:
            release = cur.rsplit("/", 1)[-1]
            if not (project.deploy_path(name) / cur).is_dir():
                found.append(f"{name}: current -> {cur} is not a directory")
            states = [e["state"] for e in project.log(name) if e["release"] == release]
            if not states or states[-1] not in ("live", "complete"):
                found.append(f"{name}: current release {release} is {states[-1:] or 'unlogged'}")
        if project.locked(name) and not lock_expected:
            found.append(f"{name}: lock left")
        sentinel = project.deploy_path(name) / "shared" / SENTINEL
        if sentinels and (not sentinel.exists() or sentinel.read_text() != f"kept {name}"):
            found.append(f"{name}: shared/{SENTINEL} lost")
    return found


def record(project, area: str, what: str, outcome: str, **kw) -> list[str]:
    """Check the invariants, count this try in the fault report, return what was violated."""
    from tests import faults

    found = violations(project, **kw)
    faults.record(area, what, violations=len(found), outcome=outcome)
    return found
