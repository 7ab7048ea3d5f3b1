"""`atomicdeploy from-deployer`: a Deployer deploy.yaml as an inventory that loads, and a
line on stderr for each part that could not be carried over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from atomicdeploy import fromdeployer
from atomicdeploy.inventory.loader import parse

REPO = Path(__file__).resolve().parents[2]

DEPLOY_YAML = """
import:
  - recipe/laravel.php
  - contrib/php-fpm.php
config:
  application: shop
  repository: git@github.com:acme/shop.git
  keep_releases: 3
  shared_files: [.env]
  shared_dirs: [storage]
  writable_dirs: [bootstrap/cache, storage]
  writable_mode: chgrp
  http_group: www-data
  bin/php: /usr/bin/php8.2
  php_fpm_version: '8.2'
  git_tty: false
hosts:
  web1.example.com:
    remote_user: deploy
    deploy_path: '/var/www/{{application}}'
    labels: {stage: prod}
  staging:
    hostname: 10.0.0.9
    user: deploy
    port: 2222
    identity_file: ~/.ssh/staging
    deploy_path: '/var/www/{{application}}-staging'
    stage: staging
tasks:
  build:
    - run: 'cd {{release_path}} && npm ci && npm run build'
  notify:
    - run: 'curl -fsS https://status.example.com/deployed'
    - cd: '{{release_path}}'
after:
  deploy:failed: deploy:unlock
  deploy:vendors: build
  deploy:symlink: [artisan:queue:restart, artisan:horizon:terminate, notify, php-fpm:reload]
  deploy:nonsense: notify
"""


def test_a_deploy_yaml_becomes_an_inventory_that_loads():
    out = fromdeployer.convert(DEPLOY_YAML)
    inv = parse(fromdeployer.render(out))
    web, staging = inv.hosts
    assert web.name == "web1.example.com" and web.remote_user == "deploy"
    assert web.deploy_path == "/var/www/shop" and web.stage == "prod"
    assert (staging.hostname, staging.port, staging.remote_user) == ("10.0.0.9", 2222, "deploy")
    assert staging.stage == "staging" and staging.identity_file.endswith("/.ssh/staging")
    assert web.recipes == ("laravel",) and web.keep_releases == 3 and web.bin_php.endswith("8.2")
    assert (web.writable_mode, web.http_group) == ("chgrp", "www-data")
    assert [c.run for c in web.hooks["after_vendors"]] == [
        "cd {{release_path}} && npm ci && npm run build"
    ]
    assert [c.run for c in web.hooks["after_switch"]] == [
        "/usr/bin/php8.2 artisan horizon:terminate --no-interaction",
        "curl -fsS https://status.example.com/deployed",
    ]
    left = "\n".join(out.left)
    for why in (
        "import contrib/php-fpm.php: no recipe of that name here",
        "config.php_fpm_version: no setting of that name here",
        "config.git_tty: not needed",
        "task artisan:queue:restart: the laravel recipe runs it already",
        "task notify: only its `run:` steps were carried over",
        "task php-fpm:reload: defined in PHP or a recipe we do not have",
        "after deploy:nonsense: no step of that name here",
    ):
        assert why in left


def from_deployer(cwd, name: str) -> subprocess.CompletedProcess:
    """The console script, as a user runs it in `cwd`."""
    code = "from atomicdeploy.cli import program; program.run()"
    return subprocess.run(
        [sys.executable, "-c", code, "from-deployer", name],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_the_console_script_prints_the_inventory_and_what_it_left(tmp_path):
    (tmp_path / "deploy.yaml").write_text(DEPLOY_YAML)
    proc = from_deployer(tmp_path, "deploy.yaml")
    assert proc.returncode == 0, proc.stderr
    parse(proc.stdout)
    assert "not carried over: import contrib/php-fpm.php" in proc.stderr
    (tmp_path / "bad.yaml").write_text("hosts:\n  h: {deploy_path: relative/path}\n")
    bad = from_deployer(tmp_path, "bad.yaml")
    assert bad.returncode == 1
    assert "the inventory does not load yet" in bad.stderr
    assert "deploy_path must be an absolute path" in bad.stderr
