"""The README's quick start, deployed as written on three real sshd hosts (web1..web3).

Its `inventory.yml` block is read from README.md and used as it is, with these changes only:
- `repository` points at a bare repository made here (a tiny Laravel-shaped app: an `artisan`
  stand-in that logs its commands, no composer.json, so the recipe's composer step is skipped);
  the controller's mirror lives in the test's own XDG_CACHE_HOME;
- `deploy_path`, and the hosts' `hostname` and `remote_user`, are the test hosts' own;
- `nginx`, `opcache` and `healthcheck` are left out: they need a real nginx and php-fpm on
  each host (tests/integration/test_zero_downtime.py covers them).
Every other key (recipes, shared and writable paths, http_user, writable_mode, keep_releases,
...) is kept, and the shared `.env` is created on each host first, as the quick start says.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, Project
from .test_hooks_and_sources import ARTISAN
from .test_repository import git

pytestmark = pytest.mark.integration

NEEDS_REAL_SERVICES = {"nginx", "opcache", "healthcheck"}
THE_TEST_HOSTS_OWN = {"deploy_path"}


def readme_inventory() -> dict:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```yaml\n(.*?)^```", section, re.M | re.S)
    (block,) = [b for b in blocks if re.search(r"^hosts:", b, re.M)]
    return yaml.safe_load(block)


def laravel_repository(tmp_path: Path) -> tuple[Path, str]:
    """origin.git with one commit on main: public/index.php, artisan, storage/."""
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "main")
    (work / "public").mkdir()
    (work / "public" / "index.php").write_text("<?php echo 'shop v1';\n")
    (work / "artisan").write_text(ARTISAN)
    (work / "storage" / "logs").mkdir(parents=True)
    (work / "storage" / "logs" / ".gitkeep").write_text("")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "shop v1")
    git(work, "push", "-q", "origin", "main")
    return bare, git(work, "rev-parse", "HEAD")


def test_the_readme_quick_start_deploys_on_three_hosts(project: Project, tmp_path):
    inventory = readme_inventory()
    assert sorted(inventory["hosts"]) == [h.name for h in project.hosts]  # web1, web2, web3
    bare, commit = laravel_repository(tmp_path)
    config = {
        k: v
        for k, v in inventory["config"].items()
        if k not in NEEDS_REAL_SERVICES | THE_TEST_HOSTS_OWN
    }
    assert "repository" in config and config.get("branch") == "main"
    project.config = {**config, "repository": str(bare), "source": "."}
    for h in project.hosts:  # step 1 of the quick start: the shared .env on each host
        shared = project.deploy_path(h.name) / "shared"
        shared.mkdir(parents=True)
        (shared / ".env").write_text("APP_KEY=quickstart\n")
        (shared / ".env").chmod(0o600)

    proc = project.fab("test", "deploy", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name = re.search(r"deployed (\S+) to", proc.stdout).group(1)
    for h in project.hosts:
        assert project.current(h.name) == f"releases/{name}"
        live = project.deploy_path(h.name) / "current"
        assert (live / "public" / "index.php").read_text() == "<?php echo 'shop v1';\n"
        assert (live / "REVISION").read_text() == commit + "\n"
        env = live / ".env"
        assert env.is_symlink() and env.read_text() == "APP_KEY=quickstart\n"
        assert (live / "storage").is_symlink()  # shared
        artisan = (live / "artisan.log").read_text().splitlines()
        assert "config:cache --no-interaction" in artisan
        migrated = "migrate --force --no-interaction" in artisan
        assert migrated == (h.name == "web1"), (h.name, artisan)  # once, on the first host
