"""Deployer's placeholders in hook commands: {{release_path}} and its kin filled in per
deploy, shell-quoted; {{bin/php}} and {{bin/composer}} as commands; a root-served app."""

from __future__ import annotations

import subprocess

import pytest

from atomicdeploy.config import Config, RunInfo
from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory.loader import parse
from atomicdeploy.steps import hook, nginx, warmup

RUN = RunInfo(stage="p", user="u", local_host="l", pid=1, started="t", token="x")
HOSTILE = "/srv/it's $(touch pwned) `x` app"


def config(extra: str, deploy_path: str = "/srv/app") -> Config:
    h = parse(f'config:\n  deploy_path: "{deploy_path}"\n{extra}hosts:\n  web1: {{}}\n').hosts[0]
    return Config(host=h, run=RUN, release="20261203T000000Z", previous="20261202T000000Z")


def test_each_placeholder_is_filled_in_and_quoted(tmp_path):
    out = tmp_path / "out"
    cfg = config(
        "  hooks:\n    after_upload:\n"
        f"      - printf '%s|' {{{{release_path}}}} {{{{release_name}}}} {{{{previous_release}}}}"
        f" {{{{deploy_path}}}} {{{{current_path}}}} > {out}\n",
        deploy_path=HOSTILE.replace('"', ""),
    )
    assert "{{" not in hook.script(cfg, "after_upload")
    # The values stay one word each, whatever they hold; nothing in them runs.
    cmd = hook.placeholders(cfg, cfg.host.hooks["after_upload"][0].run)
    subprocess.run(["sh", "-c", cmd], cwd=tmp_path, check=True)
    parts = out.read_text().split("|")[:-1]
    base = HOSTILE
    assert parts == [
        f"{base}/releases/20261203T000000Z",
        "20261203T000000Z",
        "20261202T000000Z",
        base,
        f"{base}/current",
    ]
    assert not (tmp_path / "pwned").exists()


def test_bin_php_and_bin_composer_are_commands_with_defaults():
    cfg = config(
        "  hooks:\n    after_vendors: ['{{bin/php}} artisan about', '{{bin/composer}} dump']\n"
    )
    assert [c.run for c in cfg.host.hooks["after_vendors"]] == [
        "php artisan about",
        "composer dump",
    ]
    cfg = config("  bin/php: /usr/bin/php8.2\n  recipes: [laravel]\n")
    runs = [c.run for c in hook.shell_commands(cfg, "after_vendors")]
    assert "/usr/bin/php8.2 artisan config:cache --no-interaction" in runs


@pytest.mark.parametrize(
    "extra,words",
    [
        (
            "  hooks: {after_upload: ['echo {{nope}}']}\n",
            "placeholders: release_path, release_name",
        ),
        ("  application: '{{release_path}}'\n", "is known only while a deploy runs"),
        ("  hooks: {after_upload: ['cd \"{{release_path}}\"']}\n", "stands inside quotes"),
    ],
)
def test_a_bad_placeholder_is_one_line_at_load(extra, words):
    with pytest.raises(ConfigError) as err:
        config(extra)
    assert words in err.value.message


def test_public_dir_dot_serves_the_release_itself():
    for value in (".", "", "./"):
        cfg = config(
            f"  nginx: {{public_dir: {value!r}}}\n  warmup: [/]\n  opcache: {{socket: /s}}\n"
        )
        assert cfg.host.nginx.public_dir == ""
        assert nginx.public_path(cfg, cfg.release) == "/srv/app/releases/20261203T000000Z"
        assert "/srv/app/releases/20261203T000000Z/index.php" in warmup.script(cfg)
    with pytest.raises(ConfigError, match="must not contain"):
        config("  nginx: {public_dir: '../x'}\n")


def test_recipes_bring_deployers_defaults_unless_the_inventory_sets_them():
    laravel = config("  recipes: [laravel]\n").host
    assert laravel.shared_dirs == ("storage",) and laravel.shared_files == (".env",)
    assert "bootstrap/cache" in laravel.writable_dirs and "storage/logs" in laravel.writable_dirs
    mine = config("  recipes: [symfony]\n  shared_dirs: [var/sessions]\n").host
    assert mine.shared_dirs == ("var/sessions",)  # the inventory's own wins
    assert mine.shared_files == (".env.local",) and mine.writable_dirs == ("var",)
    assert config("  recipes: [symfony]\n").host.shared_dirs == ("var/log", "var/sessions")


def test_the_config_task_prints_the_effective_settings_with_secrets_masked(tmp_path, capsys):
    from invoke import Program

    from atomicdeploy import tasks

    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "config:\n  deploy_path: /srv/app\n  recipes: [laravel]\n"
        "  repository: 'https://u:pw123@example.com/x.git'\n"
        "  secrets: {token: abc123}\n  webhook: https://hooks.example.com/T/B/X\n"
        "hosts:\n  web1: {labels: {stage: prod}, roles: [web]}\n"
        "  web2: {labels: {stage: prod}, bin/php: php8.2}\n"
    )
    program = Program(namespace=tasks.namespace(inv), name="fab", binary="fab")
    program.run(["fab", "prod", "config", "--hosts", "web2"], exit=False)
    out = capsys.readouterr().out
    assert "web2:\n" in out and "web1:" not in out
    assert "bin/php: php8.2" in out and "- bootstrap/cache" in out
    assert "https://u:***@example.com/x.git" in out and "token: '***'" in out
    assert not any(s in out for s in ("pw123", "abc123", "hooks.example.com"))
