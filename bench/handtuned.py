"""The hand-tuned baseline `bench/fleet.py` compares atomicdeploy with: what an expert writes
in plain shell, with none of atomicdeploy's guarantees (no lock, no state log, no two-phase
go-live, no revert, no sync, no cleanup).

Per host, one OpenSSH ControlMaster connection (kex curve25519-sha256) for the whole run;
a deploy is `rsync -a --delete --link-dest=<live release>` into a new release directory and
one `ssh ... ln -s + mv -T` over the master; a rollback is that one `ssh`. Hosts run in
parallel threads, each at its own pace (no barrier).
"""

from __future__ import annotations

import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class Script:
    """The baseline on `hosts` (LocalHost objects), deploying under `root/<host>`."""

    def __init__(self, hosts, root: Path, known_hosts: Path) -> None:  # type: ignore[no-untyped-def]
        self.hosts, self.root, self.known = list(hosts), root, known_hosts
        self.live: dict[str, str] = {}

    def _ssh(self, h) -> list[str]:  # type: ignore[no-untyped-def]
        return [
            "ssh",
            "-S",
            str(self.root / f"{h.name}.sock"),
            "-p",
            str(h.port),
            "-i",
            str(h.key),
            "-o",
            "KexAlgorithms=curve25519-sha256",
            "-o",
            f"UserKnownHostsFile={self.known}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            f"{h.user}@127.0.0.1",
        ]

    def _path(self, h) -> str:  # type: ignore[no-untyped-def]
        return str(self.root / h.name)

    def open(self) -> None:
        """One master per host, kept for the run (`ControlPersist`)."""
        self.root.mkdir(parents=True, exist_ok=True)

        def one(h) -> None:  # type: ignore[no-untyped-def]
            ssh = self._ssh(h)
            master = [*ssh[:-1], "-M", "-o", "ControlPersist=600", "-fN", ssh[-1]]
            subprocess.run(master, check=True, stdin=subprocess.DEVNULL)
            subprocess.run([*ssh, f"mkdir -p {shlex.quote(self._path(h))}/releases"], check=True)

        self._each(one)

    def close(self) -> None:
        self._each(
            lambda h: subprocess.run(
                [*self._ssh(h)[:-1], "-O", "exit", self._ssh(h)[-1]], capture_output=True
            )
        )

    def _each(self, fn) -> None:  # type: ignore[no-untyped-def]
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            list(pool.map(fn, self.hosts))

    def _switch(self, h, name: str) -> None:  # type: ignore[no-untyped-def]
        path = shlex.quote(self._path(h))
        cmd = (
            f"cd {path} && ln -sfn releases/{shlex.quote(name)} .current.tmp"
            " && mv -T .current.tmp current"
        )
        subprocess.run([*self._ssh(h), cmd], check=True, stdin=subprocess.DEVNULL)

    def deploy(self, app: Path, name: str) -> None:
        def one(h) -> None:  # type: ignore[no-untyped-def]
            rsh = shlex.join(self._ssh(h)[:-1])
            argv = ["rsync", "-a", "--delete", "-e", rsh]
            if h.name in self.live:
                argv.append(f"--link-dest=../{self.live[h.name]}")
            target = f"{self._ssh(h)[-1]}:{self._path(h)}/releases/{name}/"
            subprocess.run([*argv, f"{app}/", target], check=True, stdin=subprocess.DEVNULL)
            self._switch(h, name)

        self._each(one)
        self.previous = dict(self.live)
        self.live = {h.name: name for h in self.hosts}

    def rollback(self) -> None:
        self._each(lambda h: self._switch(h, self.previous[h.name]))
        self.live = dict(self.previous)
