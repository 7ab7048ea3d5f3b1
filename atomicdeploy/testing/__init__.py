"""A test kit for atomicdeploy and its users: throw-away sshd hosts on 127.0.0.1.

Used by atomicdeploy's own tests, the demo and the benchmarks; downstream users
can start the same hosts to test their fabfiles and hooks.
"""

from .hosts import LocalHost, LocalHosts, write_inventory

__all__ = ["LocalHost", "LocalHosts", "write_inventory"]
