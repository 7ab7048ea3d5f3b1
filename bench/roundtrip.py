"""Benchmark: one SSH login and short remote commands, Fabric's defaults against ours.

Plain Fabric (the baseline) leaves Nagle's algorithm on and polls every 10 ms for a
command's end; atomicdeploy's connection (`remote.connect`) sets TCP_NODELAY before the
first packet and waits on paramiko's exit-status event; `Remote.run` sends the script on
stdin behind a fixed `sh -c` line, so nothing of it is in any process's arguments. All talk
to the same loopback sshd in the same run. Prints milliseconds per login and per `true`.
Not a test.
Usage: python bench/roundtrip.py [--commands 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fabric import Config as FabricConfig  # noqa: E402
from fabric import Connection  # noqa: E402

from atomicdeploy import inventory  # noqa: E402
from atomicdeploy.remote import Remote, connect  # noqa: E402
from atomicdeploy.testing import LocalHosts, write_inventory  # noqa: E402


def measure(make, commands: int, run=None) -> tuple[float, float, float]:
    """(ms to log in, median ms per command, ms for the first command).

    `run(conn)` runs one `true`; by default as Fabric does, in the command line."""
    conn = make()
    run = run or (lambda c: c.run("true", hide=True, in_stream=False))
    start = time.monotonic()
    conn.open()
    login = time.monotonic() - start
    times = []
    for _ in range(commands + 1):
        start = time.monotonic()
        run(conn)
        times.append(time.monotonic() - start)
    conn.close()
    return login * 1000, statistics.median(times[1:]) * 1000, times[0] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--commands", type=int, default=50)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="atomicdeploy-roundtrip-"))
    with LocalHosts(base / "sshd", 1) as hosts:
        host_list = list(hosts)
        inv = write_inventory(
            base / "inventory.yml", host_list, stage="bench", known_hosts=base / "known_hosts"
        )
        [host] = inventory.load(inv).stage("bench")
        # Records the host key first, so both sides below find it known.
        ours = lambda: connect(host, FabricConfig())  # noqa: E731
        measure(ours, 1)

        def fabric_default() -> Connection:
            conn = Connection(
                host.hostname,
                user=host.remote_user,
                port=host.port,
                connect_kwargs={"key_filename": [host.identity_file], "look_for_keys": False},
            )
            conn.client.load_host_keys(host.known_hosts)
            return conn

        def script_on_stdin(conn: Connection) -> None:
            Remote(host, conn).run("true", "bench")  # how every atomicdeploy script runs

        rows = [
            ("Fabric defaults (baseline)", fabric_default, None),
            ("atomicdeploy connection, command in argv", ours, None),
            ("atomicdeploy Remote.run, script on stdin", ours, script_on_stdin),
        ]
        print("| connection | login ms | first command ms | next commands, median ms |")
        print("|---|---|---|---|")
        for label, make, run in rows:
            results = [measure(make, args.commands, run) for _ in range(3)]
            login = statistics.median(r[0] for r in results)
            per = statistics.median(r[1] for r in results)
            first = statistics.median(r[2] for r in results)
            print(f"| {label} | {login:.1f} | {first:.1f} | {per:.1f} |")


if __name__ == "__main__":
    main()
