"""Real hosts for integration tests: sshd processes on 127.0.0.1, one per fake host.

The sshd hosts live for the whole session; each test gets fresh deploy paths, a
fresh project (app source, fabfile, inventory) and its own known_hosts file.
`fab` runs in a subprocess with stdin closed, as a user or CI would run it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from atomicdeploy.testing import LocalHosts
from tests.kit.load import Load, Verdict, judge

REPO = Path(__file__).resolve().parents[2]
FAB = [sys.executable, "-m", "fabric"]
FABFILE = "from atomicdeploy import namespace\n\nns = namespace()\n"


@pytest.fixture
def taken_port():
    """A port on 127.0.0.1 that another process listens on, for the test's duration."""
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        yield squatter.getsockname()[1]


@pytest.fixture(scope="session")
def sshd_hosts(tmp_path_factory):
    with LocalHosts(tmp_path_factory.mktemp("sshd"), 3) as hosts:
        yield hosts


@dataclass
class Project:
    """A user's project dir: app source, fabfile.py and inventory.yml for some hosts."""

    dir: Path
    hosts: list
    srv: Path
    known_hosts: Path
    config: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    stage: str = "test"

    @property
    def app(self) -> Path:
        return self.dir / "app"

    def deploy_path(self, name: str) -> Path:
        return Path(self.overrides.get(name, {}).get("deploy_path") or self.srv / name / "app")

    def write_inventory(self) -> Path:
        hosts = {}
        for h in self.hosts:
            entry = h.inventory_entry(self.stage)
            entry["deploy_path"] = str(self.srv / h.name / "app")
            entry.update(self.overrides.get(h.name, {}))
            hosts[h.name] = entry
        config = {"source": "app", "known_hosts": str(self.known_hosts), **self.config}
        path = self.dir / "inventory.yml"
        path.write_text(yaml.safe_dump({"config": config, "hosts": hosts}, sort_keys=False))
        return path

    def fab(self, *args: str, env: dict | None = None, timeout: float = 120):
        self.write_inventory()
        return subprocess.run(
            [*FAB, *args],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    def start(self, *args: str, **kw) -> subprocess.Popen:
        """`fab ARGS` started as `fab` runs it, left running: for what happens meanwhile."""
        self.write_inventory()
        return subprocess.Popen(
            [*FAB, *args],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        proc = self.fab(*args, **kw)
        assert proc.returncode == 0, (
            f"fab {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc

    # What a user would look at on a host.
    def current(self, name: str) -> str | None:
        link = self.deploy_path(name) / "current"
        return os.readlink(link) if link.is_symlink() else None

    def releases(self, name: str) -> list[str]:
        d = self.deploy_path(name) / "releases"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    def log(self, name: str) -> list[dict]:
        import json

        f = self.deploy_path(name) / ".dep" / "releases.log"
        lines = f.read_text().splitlines() if f.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def locked(self, name: str) -> bool:
        return (self.deploy_path(name) / ".dep" / "deploy.lock").exists()

    def served(self, name: str, relpath: str = "public/index.php") -> str:
        return (self.deploy_path(name) / "current" / relpath).read_text()


def example_project(tmp_path: Path, hosts, config: dict, *, app: bool = True) -> Project:
    """A project on `hosts` whose source is a copy of examples/app (with `app` False, the
    caller writes its own under `project.app`)."""
    d = tmp_path / "project"
    d.mkdir()
    (d / "fabfile.py").write_text(FABFILE)
    if app:
        shutil.copytree(REPO / "examples" / "app", d / "app")
    return Project(
        dir=d,
        hosts=list(hosts),
        srv=tmp_path / "srv",
        known_hosts=tmp_path / "known_hosts",
        config=config,
    )


def under_load(
    project: Project, *fab_args: str, expected: str, clients_per_host: int = 2
) -> tuple[subprocess.CompletedProcess, Verdict]:
    """`fab ARGS` while every web host of `project` is requested; what the requests saw,
    with `expected` the version that must answer once the command returned."""
    loads = [
        Load(w.url("/"), clients=clients_per_host, max_seconds=60).start() for w in project.webs
    ]
    time.sleep(0.5)
    proc = project.ok(*fab_args)
    returned_at = time.monotonic()
    time.sleep(1.0)
    samples = [s for load in loads for s in load.stop()]
    verdict = judge(samples, returned_at=returned_at, expected=expected)
    print(f"fab {' '.join(fab_args)} under load: {verdict}")
    return proc, verdict


def write_app(app: Path, version: str, *, extra_files: int = 0) -> None:
    """A tiny PHP app whose files each carry the version."""
    (app / "public").mkdir(parents=True, exist_ok=True)
    (app / "src").mkdir(exist_ok=True)
    (app / "storage" / "logs").mkdir(parents=True, exist_ok=True)
    (app / "public" / "index.php").write_text(f"<?php echo 'version {version}';\n")
    (app / "src" / "Email.php").write_text(f"<?php const EMAIL_VERSION = '{version}';\n")
    (app / "storage" / "logs" / "seed.log").write_text("seeded from the first release\n")
    for i in range(extra_files):
        f = app / "src" / "lib" / f"d{i // 100}" / f"f{i}.php"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"<?php // file {i}\n")


@pytest.fixture
def project(tmp_path, sshd_hosts) -> Project:
    d = tmp_path / "project"
    d.mkdir()
    (d / "fabfile.py").write_text(FABFILE)
    write_app(d / "app", "1")
    (d / "app" / ".env").write_text("APP_KEY=secret\n")
    return Project(
        dir=d,
        hosts=list(sshd_hosts),
        srv=tmp_path / "srv",
        known_hosts=tmp_path / "known_hosts",
        config={
            "shared_dirs": ["storage"],
            "shared_files": [".env"],
            "writable_dirs": ["storage"],
            "keep_releases": 3,
        },
    )
