"""Real OpenSSH `sshd` processes on 127.0.0.1, one per fake host.

Each host has its own port, host key, client key and deploy path. Works as root
(sshd then needs /run/sshd) and as a normal user (sshd only lets that user in).
Stopped by PID.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Self, TypeVar

import yaml

# sshd lives in an sbin directory that a normal user's PATH often lacks; where exactly
# depends on the system (Debian and Fedora: /usr/sbin, Homebrew and source builds: /usr/local/sbin).
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
H = TypeVar("H")


class ProgramMissing(RuntimeError):
    """An OpenSSH program the fake hosts need is not installed (or not where it was said)."""


def find_program(name: str, env_var: str, package: str) -> str:
    """The absolute path of `name`: `$env_var` if set, else found on PATH or in SBIN_DIRS.

    Nothing is hard-coded, so the kit runs wherever OpenSSH is installed; the variable is
    for an install outside all of these. A missing program fails here, in one line naming
    what to install, not later as a bare "No such file" from subprocess.
    """
    wanted = os.environ.get(env_var)
    if wanted:
        found = shutil.which(wanted)
        if not found:
            raise ProgramMissing(f"{env_var}={wanted} is not an executable program")
        return os.path.abspath(found)
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    found = shutil.which(name, path=search)
    if not found:
        raise ProgramMissing(
            f"{name} not found on PATH or in {', '.join(SBIN_DIRS)}: install {package}"
            f" (or set {env_var} to its path)"
        )
    # sshd re-executes itself for every connection and refuses to run from a relative path.
    return os.path.abspath(found)


def find_sshd() -> str:
    """OpenSSH's server, which each fake host runs; `ATOMICDEPLOY_SSHD` overrides the search."""
    return find_program("sshd", "ATOMICDEPLOY_SSHD", "openssh-server")


def find_ssh_keygen() -> str:
    """OpenSSH's key generator, for the hosts' and clients' keys; `ATOMICDEPLOY_SSH_KEYGEN`
    overrides the search."""
    return find_program("ssh-keygen", "ATOMICDEPLOY_SSH_KEYGEN", "openssh-client")


def free_ports(count: int) -> list[int]:
    """`count` different ports that are free on 127.0.0.1 now.

    Every socket stays bound until all are chosen: the kernel picks a bind(0) port
    at random and may hand a closed one out again (measured here: 66 lists of 30 in
    2,000 had a repeat), and two hosts on one port is one host answering for both.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.socket())
            socks[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def keygen(path: Path) -> None:
    if not path.exists():
        subprocess.run(
            [
                find_ssh_keygen(),
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "atomicdeploy-test",
                "-f",
                str(path),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )


class PortTaken(RuntimeError):
    """Another process listens on the port a fake host was given."""


class LogMark:
    """Where some daemon logs end now, to read what a start writes to them after this."""

    def __init__(self, *paths: Path) -> None:
        self.sizes = [(p, p.stat().st_size if p.exists() else 0) for p in paths]

    def says_port_taken(self) -> bool:
        """Whether a log, since the mark, says the daemon could not bind its port."""
        for path, size in self.sizes:
            with contextlib.suppress(OSError), open(path, "rb") as f:
                f.seek(size)
                if b"Address already in use" in f.read():
                    return True
        return False


def start_on_a_free_port(
    start: Callable[[], None], move: Callable[[int], None], chosen: bool
) -> None:
    """`start()`; if its port was taken meanwhile and the kit had `chosen` it, `move` to
    another port and start again (three tries). A caller's own port is never changed."""
    for attempt in range(3):
        try:
            start()
            return
        except PortTaken:
            if not chosen or attempt == 2:
                raise
            move(free_port())


@dataclass
class LocalHost:
    """One fake host: an sshd on 127.0.0.1:port letting `user` in with `key`."""

    name: str
    port: int
    dir: Path
    key: Path
    deploy_path: Path
    user: str
    proc: subprocess.Popen | None = None

    def inventory_entry(self, stage: str = "test", **extra) -> dict:
        return {
            "hostname": "127.0.0.1",
            "port": self.port,
            "remote_user": self.user,
            "identity_file": str(self.key),
            "deploy_path": str(self.deploy_path),
            "labels": {"stage": stage},
            **extra,
        }

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, sshd: str | None = None) -> None:
        """Start this host's sshd with `sshd` (found on this machine if not given)."""
        sshd = sshd or find_sshd()
        self.dir.mkdir(parents=True, exist_ok=True)
        keygen(self.dir / "host_key")
        keygen(self.key)
        (self.dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        (self.dir / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.dir / 'host_key'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {self.user}",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 200:30:400",
                    "MaxSessions 100",
                    "LogLevel ERROR",
                    # bash sources ~/.bashrc for commands run by sshd unless SHLVL says it is
                    # nested; a developer's heavy .bashrc (pyenv init: 0.15 s of CPU here) would
                    # otherwise be measured as atomicdeploy's time on every remote command.
                    "SetEnv SHLVL=1",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        mark = LogMark(self.dir / "sshd.log")
        log = open(self.dir / "sshd.log", "ab")  # noqa: SIM115 - lives as long as sshd
        self.proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(self.dir / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_ssh(self.port, self.proc, self.dir / "sshd.pid")
        except RuntimeError as exc:
            if mark.says_port_taken():
                raise PortTaken(f"port {self.port} is taken: {exc}") from None
            raise

    def stop(self) -> None:
        """Stop this sshd by PID (and its session children: a killed connection dies too)."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def restart(self, sshd: str | None = None) -> None:
        self.stop()
        self.start(sshd)


def wait_for_ssh(port: int, proc: subprocess.Popen, pid_file: Path, timeout: float = 10.0) -> None:
    """Wait until `proc` itself serves `port`.

    A banner on the port is not enough: if another sshd holds it, ours exits with
    "Address already in use" after that sshd has answered, and every login meant
    for this host would meet the other host's keys. sshd writes its pid file only
    once it listens, so the file naming `proc` is the proof.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on port {port} exited with status {proc.returncode}")
        if pid_in(pid_file) == proc.pid:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
        time.sleep(0.02)
    raise RuntimeError(f"sshd on port {port} did not answer within {timeout}s")


def pid_in(path: Path) -> int | None:
    """The pid a daemon wrote to `path`, or None while there is none."""
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return None


class HostGroup(Generic[H]):
    """Several fake hosts started and stopped together; iterable, indexable, a context."""

    hosts: list[H]

    def start(self) -> Self:
        try:
            for host in self.hosts:
                self._start_one(host)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_one(self, host: H) -> None:
        host.start()

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[H]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, i: int) -> H:
        return self.hosts[i]


class LocalHosts(HostGroup[LocalHost]):
    """N hosts under one directory: `with LocalHosts(base, 3) as hosts: ...`."""

    def __init__(
        self, base: Path, count: int, *, prefix: str = "web", ports: Iterable[int] | None = None
    ) -> None:
        self.base = Path(base)
        self.user = getpass.getuser()
        # Ports we chose can be chosen again if another process took one meanwhile.
        self.chosen_ports = ports is None
        port_list = list(ports) if ports is not None else free_ports(count)
        self.hosts = [
            LocalHost(
                name=f"{prefix}{i + 1}",
                port=port_list[i],
                dir=self.base / "hosts" / f"{prefix}{i + 1}",
                key=self.base / "hosts" / f"{prefix}{i + 1}" / "client_key",
                deploy_path=self.base / "srv" / f"{prefix}{i + 1}" / "app",
                user=self.user,
            )
            for i in range(count)
        ]
        self.known_hosts = self.base / "known_hosts"

    def _start_one(self, host: LocalHost) -> None:
        def move(port: int) -> None:
            host.port = port

        start_on_a_free_port(lambda: host.start(self._sshd), move, self.chosen_ports)

    def start(self) -> LocalHosts:
        # Both looked up once, before any host starts: a missing one is one error, not N.
        self._sshd = find_sshd()
        find_ssh_keygen()
        return super().start()


def write_inventory(
    path: Path,
    hosts: Iterable[LocalHost],
    *,
    stage: str = "test",
    known_hosts: Path | None = None,
    **config,
) -> Path:
    """An inventory.yml for these hosts; `config` goes under `config:`."""
    cfg = dict(config)
    if known_hosts:
        cfg.setdefault("known_hosts", str(known_hosts))
    data = {"config": cfg, "hosts": {h.name: h.inventory_entry(stage) for h in hosts}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
