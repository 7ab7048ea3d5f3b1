"""A pytest plugin: throw-away sshd hosts for a test, stopped when the test ends.

Enable it in your conftest.py (pytest comes with the `testing` extra):

    pytest_plugins = ["atomicdeploy.testing.fixtures"]

then ask for `atomicdeploy_hosts` and call it: `hosts = atomicdeploy_hosts(n=2)`. It is a
separate module so that `atomicdeploy.testing` itself never imports pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .hosts import LocalHosts

StartHosts = Callable[..., LocalHosts]


@pytest.fixture
def atomicdeploy_hosts(tmp_path: Path) -> Iterator[StartHosts]:
    """A factory: `atomicdeploy_hosts(n=2, prefix="web")` starts n sshd hosts on 127.0.0.1.

    Each call gets a directory of its own under the test's tmp_path (keys, sshd config,
    deploy paths), so a test may start several groups. Every group is stopped by PID at
    teardown, also when the test failed: no sshd outlives the test that started it.
    """
    started: list[LocalHosts] = []

    def start(n: int = 2, *, prefix: str = "web") -> LocalHosts:
        group = LocalHosts(tmp_path / f"atomicdeploy-hosts-{len(started) + 1}", n, prefix=prefix)
        started.append(group)
        return group.start()

    try:
        yield start
    finally:
        for group in reversed(started):
            group.stop()
