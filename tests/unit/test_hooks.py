"""Hooks and recipes without a host: point names, inventory parsing, the shell a hook
becomes (and what it does under `sh`), and how a plan groups scripts into round trips."""

from __future__ import annotations

import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from atomicdeploy import shell
from atomicdeploy.config import Config, RunInfo
from atomicdeploy.errors import ConfigError
from atomicdeploy.hooks import POINTS, STEPS, HookCommand, Hooks, check_point
from atomicdeploy.inventory import HostConfig, parse
from atomicdeploy.recipes import COMPOSER_OPTIONS, commands_for
from atomicdeploy.steps import hook

RUN = RunInfo(
    stage="prod",
    user="alice",
    local_host="laptop",
    pid=1,
    started="t",
    token="abc",
    revision="0123456789abcdef",
)


def cfg(primary: bool = True, **host) -> Config:
    h = HostConfig(name="web1", deploy_path="/srv/app", hostname="web1", **host)
    return Config(
        host=h, run=RUN, release="20261124T000000Z", previous="20261123T000000Z", primary=primary
    )


def inventory(config: str):
    text = "config:\n  deploy_path: /srv/app\n" + textwrap.indent(textwrap.dedent(config), "  ")
    return parse(text + "hosts:\n  web1: {}\n  web2: {}\n")


def message(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return info.value.message


# --- points ------------------------------------------------------------------------------------


def test_every_step_has_a_before_and_after_point_and_on_failure_exists():
    for step in STEPS:
        assert f"before_{step}" in POINTS and f"after_{step}" in POINTS
    assert "on_failure" in POINTS


def test_an_unknown_point_names_the_closest_and_every_valid_one():
    text = message(check_point, "after_shraed")
    assert "unknown hook point 'after_shraed' (did you mean 'after_shared'?)" in text
    assert "valid: before_release, after_release" in text and "on_failure" in text


def test_python_hooks_register_with_decorators_or_calls_and_keep_order():
    hooks = Hooks()

    @hooks.after("upload")
    def first(c, cfg): ...

    def second(c, cfg): ...

    hooks.after("upload", second)
    hooks.before("switch", second)
    assert hooks.at("after_upload") == (first, second)
    assert hooks.at("before_switch") == (second,)
    assert hooks.at("after_switch") == ()
    hooks.check()  # no problem recorded


def test_a_python_hook_on_an_unknown_step_is_reported_at_start_naming_the_valid_steps():
    hooks = Hooks()
    hooks.after("symlink", lambda c, cfg: None)  # Deployer's name: not ours
    text = message(hooks.check)
    assert text.startswith("after('symlink'): unknown step")
    steps = "release, upload, shared, writable, vendors, warmup, switch, cleanup"
    assert f"valid steps: {steps}" in text


def test_hooks_survive_invoke_config_copies_as_the_same_object():
    import copy

    hooks = Hooks()
    assert copy.copy(hooks) is hooks


# --- inventory ---------------------------------------------------------------------------------


def test_inventory_hooks_accept_strings_lists_and_once_maps():
    (web1, _) = inventory("""
        hooks:
          after_shared: ["composer install", {run: "php artisan migrate --force", once: true}]
          before_switch: "php bin/console cache:warmup"
    """).hosts
    assert web1.hooks["after_shared"] == (
        HookCommand("composer install"),
        HookCommand("php artisan migrate --force", once=True),
    )
    assert web1.hooks["before_switch"] == (HookCommand("php bin/console cache:warmup"),)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "hooks: {after_symlink: [x]}\n",
            "hooks has an unknown hook point 'after_symlink' (did you mean 'after_switch'?); valid: ",  # noqa: E501
        ),
        ("hooks: [x]\n", "hooks must be a map of hook points to lists of commands, not a list"),
        ("hooks: {after_shared: [1]}\n", "each command must be a string, not an integer"),
        ("hooks: {after_shared: ['  ']}\n", "empty command"),
        ("hooks: {after_shared: [{run: x, when: y}]}\n", "a command map needs 'run'"),
        (
            "recipes: [drupal]\n",
            "recipes has an unknown recipe 'drupal' (valid: composer, laravel, symfony)",
        ),
        ("webhook: ftp://example.com/x\n", "webhook must be http:// or https:// URLs"),
        ("secrets: [a]\n", "secrets must be a map of names to strings"),
    ],
)
def test_bad_hooks_recipes_webhooks_and_secrets_are_one_line_errors(config, expected):
    text = message(inventory, config)
    assert expected in text
    assert "\n" not in text


def test_a_webhook_error_never_echoes_the_url():
    text = message(inventory, "webhook: ftp://hooks.example.com/T0KEN\n")
    assert "T0KEN" not in text


def test_secrets_and_webhooks_stay_out_of_the_host_config_repr():
    text = "webhook: https://hooks.example.com/T0KEN\nsecrets: {db: hunter2}\n"
    (web1, _) = inventory(text).hosts
    assert web1.webhook == ("https://hooks.example.com/T0KEN",)
    assert web1.secrets == {"db": "hunter2"}
    assert "T0KEN" not in repr(web1) and "hunter2" not in repr(web1)


# --- recipes -----------------------------------------------------------------------------------


def test_composer_runs_after_vendors_only_when_composer_json_is_there():
    (cmd,) = commands_for(["composer"])["after_vendors"]
    assert cmd == HookCommand(
        f"composer {COMPOSER_OPTIONS}", requires="composer.json", source="composer"
    )


def test_laravel_brings_composer_and_migrates_once_before_the_switch():
    got = commands_for(["laravel"], composer_bin="/usr/local/bin/composer")
    runs = [c.run for c in got["after_vendors"]]
    assert runs[0].startswith("/usr/local/bin/composer install")
    caches = ("storage:link", "config:cache", "route:cache", "view:cache", "event:cache")
    assert runs[1:] == [f"php artisan {a} --no-interaction" for a in caches]
    (migrate,) = got["before_switch"]
    assert migrate.once and migrate.requires == "artisan"
    assert migrate.run == "php artisan migrate --force --no-interaction"
    (restart,) = got["after_switch"]
    assert restart.run == "php artisan queue:restart --no-interaction" and not restart.roles
    (restart,) = commands_for(["laravel"], workers=True)["after_switch"]
    assert restart.roles == ("worker",)


def test_symfony_warms_its_cache_after_vendors():
    runs = [c.run for c in commands_for(["symfony"])["after_vendors"]]
    assert runs[1:] == [
        "php bin/console cache:clear --no-warmup --no-interaction --env=prod",
        "php bin/console cache:warmup --no-interaction --env=prod",
    ]


def test_recipe_commands_come_before_the_inventory_ones_and_once_only_on_the_primary():
    host = {"recipes": ("laravel",), "hooks": {"before_switch": (HookCommand("echo mine"),)}}
    primary = [c.run for c in hook.shell_commands(cfg(True, **host), "before_switch")]
    other = [c.run for c in hook.shell_commands(cfg(False, **host), "before_switch")]
    assert primary == ["php artisan migrate --force --no-interaction", "echo mine"]
    assert other == ["echo mine"]


# --- the shell a hook becomes ------------------------------------------------------------------


def test_a_hook_runs_in_a_subshell_in_its_directory_with_stdin_closed():
    assert shell.hook("/srv/my app", "echo 'hi' && exit 3", env=[("TOKEN", "s3 cr3t")]) == (
        "cd -- '/srv/my app' && ( export TOKEN='s3 cr3t'; "
        "eval 'echo '\"'\"'hi'\"'\"' && exit 3' ) </dev/null"
    )


def test_a_hook_with_requires_is_skipped_when_the_file_is_absent(tmp_path):
    script = shell.hook(str(tmp_path), "touch ran", requires="composer.json")
    subprocess.run(["sh", "-c", script], check=True)
    assert not (tmp_path / "ran").exists()
    (tmp_path / "composer.json").write_text("{}")
    subprocess.run(["sh", "-c", script], check=True)
    assert (tmp_path / "ran").exists()


def test_hook_commands_see_the_release_facts_and_cannot_break_out_of_their_quotes(tmp_path):
    release = tmp_path / "rel $(touch pwned) 'x'"
    release.mkdir()
    c = cfg()
    env = [(k, str(release) if k == "RELEASE_PATH" else v) for k, v in hook.env(c)]
    script = shell.hook(
        str(release),
        'printf "%s|%s|%s" "$RELEASE" "$STAGE" "$RELEASE_PATH" > out; }; echo escaped',
        env=env,
    )
    proc = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0  # the stray `}` is a syntax error inside the hook's own sh
    assert not (tmp_path / "pwned").exists()
    ok = shell.hook(
        str(release), 'printf "%s|%s|%s" "$RELEASE" "$STAGE" "$RELEASE_PATH" > out', env=env
    )
    subprocess.run(["sh", "-c", ok], cwd=tmp_path, check=True)
    assert (release / "out").read_text() == f"20261124T000000Z|prod|{release}"


def test_a_failing_hook_stops_the_point_and_names_itself(tmp_path):
    c = cfg(hooks={"after_shared": (HookCommand("exit 4"), HookCommand("touch second"))})
    text = hook.script(c, "after_shared").replace(
        "/srv/app/releases/20261124T000000Z", shlex.quote(str(tmp_path))
    )
    script = shell.sequence([("hook after_shared", text)])
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 4
    assert "@@ad:step=hook after_shared" in proc.stderr
    assert not (Path(tmp_path) / "second").exists()


# --- plans: scripts grouped into round trips, Python hooks in between ------------------------


class FakeRemote:
    name = "web1"
    conn = "the connection"

    def out(self, line):
        self.lines.append(("out", line))

    def err(self, line):
        self.lines.append(("err", line))

    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self.lines: list[tuple[str, str]] = []

    def run(self, script, step, **kw):
        self.sent.append((step, script))
        return 0, ""

    def call(self, step, what, fn):
        fn()


def test_consecutive_scripts_are_one_round_trip_and_python_hooks_run_between():
    calls = []
    remote = FakeRemote()

    def py(c, cfg):
        calls.append((c._conn, len(remote.sent)))

    plan = [("a", "echo a"), ("skip", None), ("b", "echo b"), ("py", py), ("c", "echo c")]
    hook.run_plan(remote, cfg(), plan, "build")
    assert [s for _, s in remote.sent] == [
        shell.sequence([("a", "echo a"), ("skip", None), ("b", "echo b")]),
        shell.sequence([("c", "echo c")]),
    ]
    assert calls == [("the connection", 1)]


def test_a_python_hook_exception_becomes_a_step_failure_of_that_host():
    def broken(c, cfg):
        raise RuntimeError("npm is missing")

    from atomicdeploy.errors import AtomicDeployError

    with pytest.raises(AtomicDeployError) as info:
        hook.run_plan(FakeRemote(), cfg(), [("hook after_upload broken", broken)], "build")
    assert str(info.value) == "[web1 hook after_upload broken] RuntimeError: npm is missing"


def test_a_python_hooks_commands_print_whole_lines_through_the_reporter_and_never_read_stdin():
    seen = {}

    class Conn:
        host = "127.0.0.1"

        def run(self, command, **kw):
            seen.update(kw)
            kw["out_stream"].write("password hun")
            kw["out_stream"].flush()  # Invoke flushes after each read: no half line yet
            kw["out_stream"].write("ter2 ok\npart")
            kw["out_stream"].write("ial line")
            kw["err_stream"].write("warn\n")
            return "result"

    remote = FakeRemote()
    remote.conn = Conn()
    results = []
    hook.run_plan(
        remote, cfg(), [("py", lambda c, cfg: results.append((c.run("x"), c.host)))], "build"
    )
    assert results == [("result", "127.0.0.1")]
    assert seen["in_stream"] is False
    # Whole lines only, so the Reporter can mask a secret that arrived in two reads.
    assert remote.lines == [
        ("out", "password hunter2 ok"),
        ("err", "warn"),
        ("out", "partial line"),
    ]


def test_a_failing_command_in_a_python_hook_is_one_line():
    from invoke.exceptions import UnexpectedExit
    from invoke.runners import Result

    from atomicdeploy.errors import AtomicDeployError

    def failing(c, cfg):
        err = "npm ERR! missing script\nnpm ERR! build\n"
        raise UnexpectedExit(Result(command="npm run build", exited=2, stderr=err))

    def leaving(c, cfg):
        raise SystemExit(3)

    with pytest.raises(AtomicDeployError) as info:
        hook.run_plan(FakeRemote(), cfg(), [("hook after_upload failing", failing)], "build")
    assert info.value.message == "command 'npm run build' exited 2: npm ERR! build"
    with pytest.raises(AtomicDeployError) as info:
        hook.run_plan(FakeRemote(), cfg(), [("hook after_upload leaving", leaving)], "build")
    assert info.value.message == "SystemExit: 3"


def test_a_decorator_without_a_step_name_is_reported():
    hooks = Hooks()

    @hooks.after
    def oops(c, cfg): ...

    assert "@hooks.after needs a step name" in message(hooks.check)


def test_a_revert_line_for_the_old_release_does_not_carry_the_new_revision():
    import json

    from atomicdeploy.steps.release import log_line

    c = cfg()
    assert json.loads(log_line(c, c.release, "live"))["revision"] == "0123456789abcdef"
    assert json.loads(log_line(c, c.previous, "live", "reverted")).get("revision", "") == ""
