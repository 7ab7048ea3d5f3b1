"""Throw-away sshd hosts on 127.0.0.1, for testing your fabfile and hooks against real SSH.

Each `LocalHost` is OpenSSH's own sshd with its own port, keys and deploy path, stopped by
PID; `write_inventory` writes an inventory.yml for them. With pytest, the plugin
`atomicdeploy.testing.fixtures` (the `testing` extra) starts and stops them per test. This
package does not import pytest itself, so it works with any test runner. `RecordingRemote`
records what a step or hook would send to a host, with no host at all.
"""

from .hosts import LocalHost, LocalHosts, ProgramMissing, write_inventory
from .recording import RecordingRemote

__all__ = ["LocalHost", "LocalHosts", "ProgramMissing", "RecordingRemote", "write_inventory"]
