"""On real sshd hosts: hooks (inventory and Python), recipes, --revision from git,
check_remote and --force, tag-release, --dry-run, status, webhooks and masked secrets."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import write_app
from .invariants import record

pytestmark = pytest.mark.integration


def release_of(proc) -> str:
    return re.search(r"deployed (\S+) to", proc.stdout).group(1)


def names(project):
    return [h.name for h in project.hosts]


# --- inventory hooks ---------------------------------------------------------------------------


def test_inventory_hooks_run_in_the_release_in_order_and_once_only_on_the_first_host(project):
    trail = project.dir / "trail"
    project.config["hooks"] = {
        "before_release": [f"echo before_release $HOST >> {trail}"],
        "after_upload": [f"echo after_upload $HOST $(cat public/index.php | wc -l) >> {trail}"],
        "after_shared": [f"test -L storage && echo after_shared $HOST >> {trail}"],
        "before_switch": [
            "printf '%s' \"$RELEASE\" > hook-release",
            {"run": f"echo migrate $HOST >> {trail}", "once": True},
        ],
        "after_switch": [f"readlink ../../current >> {trail}"],
        "after_cleanup": [f"echo after_cleanup $HOST >> {trail}"],
    }
    name = release_of(project.ok("test", "deploy"))
    lines = trail.read_text().splitlines()
    for h in names(project):
        mine = [ln for ln in lines if h in ln.split()]
        assert [ln.split()[0] for ln in mine] == (
            ["before_release", "after_upload", "after_shared"]
            + (["migrate"] if h == "web1" else [])
            + ["after_cleanup"]
        )
        assert (project.deploy_path(h) / "releases" / name / "hook-release").read_text() == name
    # after_switch ran once every host was live: each saw `current` on the new release.
    assert lines.count(f"releases/{name}") == 3


def test_a_failing_before_switch_hook_fails_the_deploy_and_nothing_goes_live(project):
    first = release_of(project.ok("test", "deploy"))
    hooks = {
        "before_switch": ["echo 'cache warmup broke' >&2; exit 9"],
        "on_failure": ['echo "$RELEASE failed" > failed.txt'],
    }
    project.overrides = {"web2": {"hooks": hooks}}
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert (
        "[web2] failed at step 'hook before_switch' (not live): cache warmup broke (exit 9)"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert (
        record(
            project,
            "fault",
            "a hook fails before the switch",
            "nothing live; on_failure ran; next deploy fine",
            sentinels=False,
        )
        == []
    )
    for h in names(project):
        assert project.current(h) == f"releases/{first}"
        assert project.served(h) == "<?php echo 'version 1';\n"
        assert project.releases(h) == [first]
        assert not project.locked(h)
    # on_failure ran in deploy_path on the host that has it, after the clean-up.
    failed = (project.deploy_path("web2") / "failed.txt").read_text().strip()
    assert failed.endswith(" failed") and failed.split()[0] > first
    project.overrides = {}
    assert project.ok("test", "deploy")  # once the hook is fixed, the next deploy succeeds


def test_a_failing_after_switch_hook_reports_the_release_live_and_unlocks(project):
    project.config["hooks"] = {"after_switch": ["echo 'cache:clear failed' >&2; exit 3"]}
    proc = project.fab("test", "deploy")
    assert proc.returncode == 4  # live everywhere, a hook after the switch failed
    assert (
        "[web1] failed at step 'hook after_switch' (live): cache:clear failed (exit 3)"
        in proc.stderr
    )
    assert "is live on every host" in proc.stderr
    assert (
        record(
            project,
            "fault",
            "a hook fails after the switch",
            "release stays live, error says (live), locks released, exit 4",
            sentinels=False,
        )
        == []
    )
    for h in names(project):
        assert project.current(h) is not None
        assert not project.locked(h)


def test_unknown_hook_point_is_exit_2_naming_the_valid_points_and_touches_no_host(project):
    project.config["hooks"] = {"after_symlink": ["true"]}
    proc = project.fab("test", "deploy")
    assert proc.returncode == 2
    assert (
        "unknown hook point 'after_symlink' (did you mean 'after_switch'?); valid: before_release"
        in proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not any(project.deploy_path(h).exists() for h in names(project))


def test_once_commands_before_the_switch_wait_for_every_host_to_prepare(project):
    trail = project.dir / "migrations"
    project.config["hooks"] = {
        "before_switch": [{"run": f"echo migrated >> {trail}", "once": True}]
    }
    project.overrides = {"web3": {"hooks": {"after_shared": ["exit 7"], **project.config["hooks"]}}}
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1 and "[web3] failed at step 'hook after_shared'" in proc.stderr
    assert not trail.exists()  # web3 failed to prepare: the database was never migrated
    project.overrides = {}
    proc = project.ok("test", "deploy")
    assert trail.read_text() == "migrated\n"  # once, on web1, after the barrier
    assert re.search(r"^host\s+release\s+result\s+lock s\s+prepare s\s+once s", proc.stdout, re.M)


# --- recipes -----------------------------------------------------------------------------------

ARTISAN = """<?php
file_put_contents(__DIR__ . '/artisan.log', implode(' ', array_slice($argv, 1)) . "\\n", FILE_APPEND);
"""  # noqa: E501


def test_composer_runs_only_when_composer_json_is_in_the_release(project):
    composer = project.dir / "fake-composer"
    composer.write_text('#!/bin/sh\nmkdir -p vendor && echo "$*" > vendor/installed-with\n')
    composer.chmod(0o755)
    project.config.update(recipes=["composer"], composer=str(composer))
    first = release_of(project.ok("test", "deploy"))
    assert not (project.deploy_path("web1") / "releases" / first / "vendor").exists()
    (project.app / "composer.json").write_text("{}")
    second = release_of(project.ok("test", "deploy"))
    for h in names(project):
        vendor = project.deploy_path(h) / "releases" / second / "vendor"
        args = (vendor / "installed-with").read_text()
        assert args.startswith("install --no-dev --prefer-dist --no-interaction")


def test_laravel_recipe_caches_everywhere_and_migrates_on_the_first_host_only(project):
    composer = project.dir / "fake-composer"
    composer.write_text("#!/bin/sh\nmkdir -p vendor\n")
    composer.chmod(0o755)
    (project.app / "artisan").write_text(ARTISAN)
    (project.app / "composer.json").write_text("{}")
    project.config.update(recipes=["laravel"], composer=str(composer))
    name = release_of(project.ok("test", "deploy"))
    for h in names(project):
        log = (project.deploy_path(h) / "releases" / name / "artisan.log").read_text().splitlines()
        expected = [
            "storage:link --no-interaction",
            "config:cache --no-interaction",
            "route:cache --no-interaction",
            "view:cache --no-interaction",
            "event:cache --no-interaction",
        ]
        if h == "web1":
            expected.append("migrate --force --no-interaction")
        expected.append("queue:restart --no-interaction")  # once live; no host is a worker
        assert log == expected


def test_symfony_recipe_clears_and_warms_the_cache_on_every_host(project):
    composer = project.dir / "fake-composer"
    composer.write_text("#!/bin/sh\nmkdir -p vendor\n")
    composer.chmod(0o755)
    (project.app / "bin").mkdir()
    (project.app / "bin" / "console").write_text(ARTISAN.replace("__DIR__ . '/", "__DIR__ . '/../"))
    (project.app / "composer.json").write_text("{}")
    project.config.update(recipes=["symfony"], composer=str(composer))
    name = release_of(project.ok("test", "deploy"))
    for h in names(project):
        log = (project.deploy_path(h) / "releases" / name / "artisan.log").read_text().splitlines()
        assert log == [
            "cache:clear --no-warmup --no-interaction --env=prod",
            "cache:warmup --no-interaction --env=prod",
        ]


# --- Python hooks from a fabfile ---------------------------------------------------------------

PY_FABFILE = """
from invoke import Responder

from atomicdeploy import Hooks, namespace

hooks = Hooks()

@hooks.after("upload")
def mark(c, cfg):
    c.run(f"echo {cfg.host.name} {cfg.previous or 'none'} > {cfg.release_path}/py-hook")
    answer = Responder(pattern=r"Proceed\\? ", response="yes\\n")
    c.run(f"printf 'Proceed? '; read a; echo $a > {cfg.release_path}/answered", watchers=[answer])

@hooks.before("switch")
def check(c, cfg):
    if cfg.host.name == "web3" and cfg.previous:
        raise RuntimeError("web3 refuses the second deploy")

@hooks.on_failure
def report(c, cfg, error):
    c.run(f"echo {type(error).__name__} > {cfg.host.deploy_path}/on-failure")

ns = namespace(hooks=hooks)
"""


def test_python_hooks_get_the_connection_and_config_and_can_fail_the_deploy(project):
    (project.dir / "fabfile.py").write_text(PY_FABFILE)
    first = release_of(project.ok("test", "deploy"))
    for h in names(project):
        got = (project.deploy_path(h) / "releases" / first / "py-hook").read_text()
        assert got == f"{h} none\n"
        answered = project.deploy_path(h) / "releases" / first / "answered"
        assert answered.read_text() == "yes\n"  # a watcher answered the prompt
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert (
        "[web3] failed at step 'hook before_switch check' (not live): RuntimeError: web3 refuses the second deploy"  # noqa: E501
        in proc.stderr
    )
    for h in names(project):
        assert project.current(h) == f"releases/{first}"
        assert (project.deploy_path(h) / "on-failure").read_text() == "FleetError\n"


def test_a_python_hook_on_an_unknown_step_is_exit_2_before_any_host(project):
    (project.dir / "fabfile.py").write_text(
        "from atomicdeploy import Hooks, namespace\nhooks = Hooks()\n"
        "hooks.after('deploy:symlink', lambda c, cfg: None)\nns = namespace(hooks=hooks)\n"
    )
    proc = project.fab("test", "deploy")
    assert proc.returncode == 2
    assert "after('deploy:symlink'): unknown step; valid steps: release, upload" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(project.deploy_path(h).exists() for h in names(project))


# --- git source: --revision, REVISION, check_remote, --force, tag-release --------------------


def git(project, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(project.dir),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=project.dir, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_revision_deploys_the_committed_tree_records_it_and_skips_when_already_live(project):
    git(project, "init", "-q")
    git(project, "add", "app")
    git(project, "commit", "-qm", "v1")
    sha = git(project, "rev-parse", "HEAD")
    write_app(project.app, "uncommitted")  # the work tree differs: --revision ignores it
    name = release_of(project.ok("test", "deploy", "--revision", "HEAD"))
    for h in names(project):
        release = project.deploy_path(h) / "releases" / name
        assert project.served(h) == "<?php echo 'version 1';\n"
        assert (release / "REVISION").read_text() == sha + "\n"
        assert {e["revision"] for e in project.log(h)} == {sha}
    again = project.ok("test", "deploy", "--revision", sha[:8])
    assert (
        f"revision {sha[:12]} is already live on every host of test: nothing to do" in again.stdout
    )
    assert all(project.releases(h) == [name] for h in names(project))
    forced = release_of(project.ok("test", "deploy", "--revision", "HEAD", "--force"))
    assert forced != name and project.current("web1") == f"releases/{forced}"


def test_tag_release_tags_the_next_version_and_the_release_name_carries_it(project):
    git(project, "init", "-q")
    git(project, "add", "app")
    git(project, "commit", "-qm", "v1")
    git(project, "tag", "-a", "v1.4.2", "-m", "old")
    write_app(project.app, "2")
    git(project, "commit", "-qam", "v2")
    env = {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    proc = project.ok("tag-release", "--bump", "minor", env=env)
    assert "tagged HEAD as v1.5.0" in proc.stdout
    assert git(project, "cat-file", "-t", "v1.5.0") == "tag"
    name = release_of(project.ok("test", "deploy", "--revision", "v1.5.0"))
    assert name.endswith("-v1.5.0")
    assert project.served("web1") == "<?php echo 'version 2';\n"


def test_an_unknown_revision_is_exit_2_and_touches_no_host(project):
    git(project, "init", "-q")
    git(project, "add", "app")
    git(project, "commit", "-qm", "v1")
    proc = project.fab("test", "deploy", "--revision", "no-such-branch")
    assert proc.returncode == 2
    assert "no-such-branch" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(project.deploy_path(h).exists() for h in names(project))


# --- dry run -------------------------------------------------------------------------------------


def snapshot(project):
    out = {}
    for h in names(project):
        root = project.deploy_path(h)
        out[h] = (
            sorted(
                (
                    str(p.relative_to(root)),
                    p.stat().st_mtime_ns if not p.is_symlink() else str(p.readlink()),
                )
                for p in root.rglob("*")
            )
            if root.exists()
            else None
        )
    return out


def test_dry_run_prints_every_command_and_transfer_and_changes_nothing(project):
    proc = project.ok("test", "deploy", "--dry-run")
    assert not any(project.deploy_path(h).exists() for h in names(project))
    assert not project.known_hosts.exists()  # not even a host key is recorded
    for h in names(project):
        assert f"[{h}] " in proc.stdout
    # Per host: the rsync into the upload cache; the copy into the release opens the build.
    assert proc.stdout.count("# upload") == 3 and "rsync --archive" in proc.stdout
    assert proc.stdout.count("cp -a --no-preserve=xattr,context") == 3
    assert "# setup" in proc.stdout and "# switch" in proc.stdout and "mv -fT" in proc.stdout
    assert "nothing was changed on any host" in proc.stdout
    # The release reaches the disk before it is logged complete (sync_release: true).
    for h in names(project):
        release_path = f"{project.deploy_path(h)}/releases/"
        flushed = proc.stdout.index(f"sync -f -- {release_path}")
        assert proc.stdout.index("@@ad:start=log", flushed) > flushed
    project.config["sync_release"] = False
    assert "sync -f" not in project.ok("test", "deploy", "--dry-run").stdout
    del project.config["sync_release"]

    project.ok("test", "deploy")
    write_app(project.app, "2")
    name = release_of(project.ok("test", "deploy"))
    write_app(project.app, "3")
    before = snapshot(project)
    kh = project.known_hosts.read_text()
    proc = project.ok("test", "deploy", "--dry-run")
    assert re.search(r"would upload \d+ changed file\(s\)", proc.stdout)
    assert snapshot(project) == before and project.known_hosts.read_text() == kh
    assert "rsync --version" in proc.stdout  # a deploy reads the hosts' rsync version
    proc = project.ok("test", "rollback", "--dry-run")
    assert "# switch" in proc.stdout and "nothing was changed on any host" in proc.stdout
    assert "rsync --version" not in proc.stdout  # a rollback has no use for it
    assert snapshot(project) == before
    assert all(project.current(h) == f"releases/{name}" for h in names(project))


# --- status --------------------------------------------------------------------------------------


def test_status_shows_live_release_revision_lock_and_disagreement(project):
    first = release_of(project.ok("test", "deploy"))
    write_app(project.app, "2")
    second = release_of(project.ok("test", "deploy"))
    out = project.ok("test", "status").stdout
    assert re.search(rf"web1\s+{second}\s+-\s+not managed\s+-", out)
    assert "all hosts serve the same release" in out
    project.ok("test", "switch", "--release", first, "--hosts", "web2")
    lock = project.deploy_path("web3") / ".dep" / "deploy.lock"
    lock.mkdir()
    owner = {"user": "bob", "host": "ci", "pid": 7, "time": "2026-11-24T10:00:00Z", "token": "x"}
    (lock / "owner").write_text(json.dumps(owner))
    out = project.ok("test", "status").stdout
    assert re.search(rf"web2\s+{first}", out)
    assert "hosts disagree: 2 different live releases" in out
    assert "bob on ci (pid 7) since 2026-11-24T10:00:00Z" in out


def test_status_says_whether_nginx_points_at_the_live_release(project):
    for h in names(project):
        project.overrides[h] = {
            "nginx": {
                "root_file": str(project.srv / h / "root.conf"),
                "test": "true",
                "reload": "true",
                "pid_file": str(project.srv / "none.pid"),
            }
        }
    project.ok("test", "deploy")
    (project.srv / "web2" / "root.conf").write_text("set $root_dir /somewhere/else;\n")
    (project.srv / "web3" / "root.conf").unlink()
    out = project.ok("test", "status").stdout
    assert re.search(r"web1\s+\S+\s+-\s+ok\s", out)
    assert re.search(r"web2\s+\S+\s+-\s+points elsewhere\s", out)
    assert re.search(r"web3\s+\S+\s+-\s+missing\s", out)
    assert "nginx does not point at the live release on some host(s)" in out


# --- notifications and secrets -----------------------------------------------------------------


class Receiver:
    """A local Slack-like webhook endpoint that records what it is sent."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/s3cr3tTOKEN"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_webhook_is_told_of_start_success_and_failure_with_stage_user_and_duration(
    project, receiver
):
    project.config["webhook"] = receiver.url
    project.ok("test", "deploy", env={"ATOMICDEPLOY_USER": "alice"})
    start, done = receiver.bodies
    assert start["atomicdeploy"]["kind"] == "start" and done["atomicdeploy"]["kind"] == "success"
    assert done["atomicdeploy"]["stage"] == "test" and done["atomicdeploy"]["user"] == "alice"
    assert done["atomicdeploy"]["duration_s"] > 0 and "alice" in done["text"]
    project.config["hooks"] = {"before_switch": ["exit 5"]}
    receiver.bodies.clear()
    assert project.fab("test", "deploy").returncode == 1
    assert [b["atomicdeploy"]["kind"] for b in receiver.bodies] == ["start", "failure"]
    assert "hook before_switch" in receiver.bodies[1]["atomicdeploy"]["error"]


def test_webhook_is_told_of_a_rollback_and_of_a_switch_with_their_target(project, receiver):
    project.ok("test", "deploy")
    write_app(project.app, "rolled")
    project.ok("test", "deploy")
    first, _ = sorted(project.releases("web1"))[-2:]
    project.config["webhook"] = receiver.url
    project.ok("test", "rollback", "--dry-run")
    assert receiver.bodies == []  # a dry run tells no one
    project.ok("test", "rollback", env={"ATOMICDEPLOY_USER": "alice"})
    start, done = (b["atomicdeploy"] for b in receiver.bodies)
    assert (start["action"], start["kind"], done["kind"]) == ("rollback", "start", "success")
    assert done["release"] == first and done["user"] == "alice"
    assert receiver.bodies[1]["text"].startswith(f"atomicdeploy: rollback of test to {first}")
    receiver.bodies.clear()
    assert project.fab("test", "switch", "--release", "nope", "--hosts", "web1").returncode != 0
    assert [(b["atomicdeploy"]["action"], b["atomicdeploy"]["kind"]) for b in receiver.bodies] == [
        ("switch", "start"),
        ("switch", "failure"),
    ]
    assert "nope" in receiver.bodies[1]["atomicdeploy"]["error"]


def test_a_failing_webhook_only_warns_and_never_shows_its_url(project, receiver):
    receiver.status = 500
    project.config["webhook"] = receiver.url
    proc = project.ok("test", "deploy")
    assert "webhook #1 failed: HTTP 500" in proc.stderr
    assert "s3cr3tTOKEN" not in proc.stdout + proc.stderr


def test_secrets_are_masked_in_every_line(project):
    (project.dir / "fabfile.py").write_text(
        "from atomicdeploy import Hooks, namespace\nhooks = Hooks()\n"
        "@hooks.after('upload')\ndef show(c, cfg):\n"
        "    c.run('echo token ' + cfg.host.secrets['db_password'])\n"
        "ns = namespace(hooks=hooks)\n"
    )
    project.config["secrets"] = {"db_password": "hunter2-xyzzy"}
    project.config["hooks"] = {
        "before_switch": ["echo 'login with hunter2-xyzzy refused' >&2; exit 1"]
    }
    proc = project.fab("test", "deploy")
    assert proc.returncode == 1
    assert "login with *** refused" in proc.stderr
    assert "[web2] token ***" in proc.stdout  # a Python hook's command output, prefixed
    assert "hunter2-xyzzy" not in proc.stdout + proc.stderr


# --- the example fabfile and --help ------------------------------------------------------------


def test_help_explains_every_option_of_every_task(project):
    from atomicdeploy.tasks import TASKS

    for t in TASKS:
        out = project.ok("--help", t.name).stdout
        assert t.__doc__.split("\n")[0][:40] in " ".join(out.split())
        for opt in t.help:
            flag = "--" + opt.replace("_", "-")
            line = next(ln for ln in out.splitlines() if flag in ln)
            assert len(line.split(flag, 1)[1].strip()) > 10, (t.name, flag)


def test_the_example_fabfile_runs_all_three_ways(project, tmp_path):
    from .conftest import FAB, REPO

    inv = project.write_inventory()
    inv.write_text(inv.read_text().replace("source: app", f"source: {project.app}"))
    env = {"ATOMICDEPLOY_INVENTORY": str(inv)}
    root = str(REPO / "examples" / "existing")

    def fab(*args):
        proc = subprocess.run(
            [*FAB, "-r", root, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            env={**__import__("os").environ, **env},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    listing = fab("--list").stdout
    for name in ("hello", "ship", "deploy", "rollback", "app.deploy", "app.test", "app.status"):
        assert re.search(rf"^\s+{re.escape(name)}\b", listing, re.M), name
    first = release_of(fab("app.test", "app.deploy"))  # 2. the whole collection
    write_app(project.app, "2")
    second = release_of(fab("ship", "--stage", "test"))  # 3. your own task
    assert "building assets locally for test" in fab("ship", "--stage", "test").stdout
    fab("rollback", "--stage", "test")  # 1. a single task
    for h in names(project):
        assert (project.deploy_path(h) / "releases" / second / "BUILT_BY").exists()
        assert project.current(h).startswith("releases/")
    assert first < second
    time.sleep(0)
