"""The pytest plugin users enable for their own tests: `atomicdeploy_hosts` as they use it.

A fresh project (its own conftest.py declaring the plugin, a test reaching each host with
plain Fabric) runs in a pytest of its own, as in a user's repository: nothing of this
suite's conftest helps it. Nothing is deployed; each host runs `true` over SSH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CONFTEST = 'pytest_plugins = ["atomicdeploy.testing.fixtures"]\n'

USER_TEST = """
import json
import os

from fabric import Connection


def test_true_runs_on_each_host(atomicdeploy_hosts):
    hosts = atomicdeploy_hosts(n=2)
    assert len(hosts) == 2 and len({h.port for h in hosts}) == 2
    for host in hosts:
        with Connection(
            "127.0.0.1",
            port=host.port,
            user=host.user,
            connect_kwargs={
                "key_filename": str(host.key),
                "look_for_keys": False,
                "allow_agent": False,
            },
        ) as conn:
            assert conn.run("true", hide=True, in_stream=False).exited == 0
    with open(os.environ["SSHD_PIDS"], "w") as f:
        json.dump([h.pid for h in hosts], f)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_users_test_gets_hosts_that_answer_ssh_and_are_stopped_after_it(tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_hosts.py").write_text(USER_TEST)
    pids = tmp_path / "sshd-pids.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SSHD_PIDS": str(pids)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    started = json.loads(pids.read_text())
    assert len(started) == 2
    leaked = [pid for pid in started if alive(pid)]
    for pid in leaked:  # not left running after this suite either
        os.kill(pid, signal.SIGTERM)
    assert not leaked, "an sshd outlived the user's test"


def test_importing_the_kit_does_not_need_pytest():
    """Users of another test runner import atomicdeploy.testing without pytest installed."""
    code = "import sys, atomicdeploy.testing; assert 'pytest' not in sys.modules, 'pytest'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
