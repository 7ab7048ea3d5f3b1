"""Hostile paths work end to end; two deploys at once never both run."""

from __future__ import annotations

import subprocess
import threading

import pytest

from tests import faults

from .conftest import FAB, write_app
from .invariants import violations

pytestmark = pytest.mark.integration


def test_paths_with_spaces_quotes_and_dollars_deploy_and_roll_back(project, tmp_path):
    weird = tmp_path / 'srv it\'s "odd" $(touch pwned) `id`'
    project.overrides = {h.name: {"deploy_path": str(weird / h.name)} for h in project.hosts}
    project.config["shared_dirs"] = ["storage", "user files/up loads"]
    (project.app / "user files" / "up loads").mkdir(parents=True)
    (project.app / "user files" / "up loads" / "a b.txt").write_text("x")
    project.ok("test", "deploy")
    write_app(project.app, "2")
    project.ok("test", "deploy")
    project.ok("test", "rollback")
    for h in project.hosts:
        path = weird / h.name
        assert project.current(h.name).startswith("releases/")
        assert (
            path / "current" / "public" / "index.php"
        ).read_text() == "<?php echo 'version 1';\n"
        link = path / "current" / "user files" / "up loads"
        assert str(link.readlink()) == "../../../shared/user files/up loads"
        assert (link / "a b.txt").read_text() == "x"
    assert not list(tmp_path.rglob("pwned"))
    assert not list(project.dir.rglob("pwned"))


def test_concurrent_deploys_of_one_stage_never_both_run(project):
    project.ok("test", "deploy")
    project.write_inventory()
    for attempt in range(20):
        write_app(project.app, f"race{attempt}")
        start = threading.Barrier(2)
        results: list[subprocess.CompletedProcess] = []

        def run(start: threading.Barrier = start, results: list = results) -> None:
            start.wait()
            results.append(
                subprocess.run(
                    [*FAB, "test", "deploy"],
                    cwd=project.dir,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            )

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.returncode for r in results)
        both = (
            "one ran, the other stopped naming the lock holder"
            if codes == [0, 1]
            else ("both ran, one after the other")
        )
        found = violations(project, sentinels=False)
        served = {project.served(h.name) for h in project.hosts}
        if served != {f"<?php echo 'version race{attempt}';\n"}:
            found.append(f"served {served}")
        faults.record(
            "concurrency",
            "two deploys of one stage started at once",
            violations=len(found) + (codes not in ([0, 1], [0, 0])),
            outcome="exactly one ran each time, or both in turn; log consistent",
        )
        assert found == [], (both, codes, [r.stderr[-2000:] for r in results])
        # Either both ran one after the other (the first finished before the second
        # started), or exactly one ran and the other stopped at the lock.
        if codes == [0, 1]:
            loser = next(r for r in results if r.returncode == 1)
            assert "locked by" in loser.stderr, loser.stderr
        else:
            assert codes == [0, 0], [r.stderr for r in results]
        for h in project.hosts:
            assert not project.locked(h.name)
            states = [e["state"] for e in project.log(h.name)]
            assert states.count("building") == states.count("complete") + states.count("failed")
            assert project.served(h.name) == f"<?php echo 'version race{attempt}';\n"
