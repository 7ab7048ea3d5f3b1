"""Roles and host selection on real hosts: web1 and web2 are web hosts, web3 is a queue
worker (role `worker`, no nginx, no php-fpm).

What each host holds afterwards is read from its deploy path: hook marker files, `current`,
the releases log. Bad selections are refused before any connection (no known_hosts line).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import subprocess
import termios
import time

import pytest

from tests.kit.load import set_version
from tests.kit.web import WebHosts

from .conftest import FAB, Project, example_project, under_load

pytestmark = pytest.mark.integration

WEB, WORKER = ("web1", "web2"), "web3"


def release_of(proc) -> str:
    return re.search(r"deployed (\S+) to", proc.stdout).group(1)


def with_roles(project: Project) -> Project:
    for name in WEB:
        project.overrides.setdefault(name, {})["roles"] = ["web"]
    project.overrides.setdefault(WORKER, {})["roles"] = ["worker"]
    project.config["hooks"] = {
        "after_switch": [
            {"run": 'touch "$DEPLOY_PATH/restarted-$RELEASE"', "roles": ["worker"]},
            'touch "$DEPLOY_PATH/every-$RELEASE"',
        ],
        "before_switch": [
            {"run": 'touch "$DEPLOY_PATH/migrated-$RELEASE"', "once": True, "roles": ["web"]},
            {"run": 'touch "$DEPLOY_PATH/supervised-$RELEASE"', "once": True, "roles": ["worker"]},
        ],
    }
    return project


def marks(project: Project, name: str) -> set[str]:
    return {p.name for p in project.deploy_path(name).iterdir() if "-2026" in p.name}


def test_hooks_run_by_role_and_once_on_the_first_host_of_the_role(project):
    with_roles(project)
    r1 = release_of(project.ok("test", "deploy"))
    assert marks(project, "web1") == {f"every-{r1}", f"migrated-{r1}"}
    assert marks(project, "web2") == {f"every-{r1}"}
    assert marks(project, WORKER) == {f"every-{r1}", f"restarted-{r1}", f"supervised-{r1}"}


def test_a_selection_deploys_and_rolls_back_its_hosts_and_says_the_stage_is_split(project):
    with_roles(project)
    r1 = release_of(project.ok("test", "deploy"))
    proc = project.ok("test", "deploy", "--hosts", "web1")
    r2 = release_of(proc)
    assert "deploying release" in proc.stdout and ": web1" in proc.stdout
    assert project.current("web1") == f"releases/{r2}"
    assert {project.current(n) for n in ("web2", WORKER)} == {f"releases/{r1}"}
    assert not (project.deploy_path("web2") / "releases" / r2).exists()
    assert f"stage test is split on purpose: web1 on {r2}; web2, web3 still on {r1}" in proc.stdout
    assert f"migrated-{r2}" in marks(project, "web1")  # once, roles web: web1 is the first
    status = project.ok("test", "status")
    assert "hosts disagree: 2 different live releases" in status.stdout
    assert f"web1 on {r2}; web2, web3 on {r1}" in status.stdout
    back = project.ok("test", "rollback", "--hosts", "web1")
    assert project.current("web1") == f"releases/{r1}"
    assert "split on purpose" not in back.stdout  # the stage is whole again
    assert all(not project.locked(n) for n in ("web1", "web2", WORKER))


def test_a_role_selection_skips_a_once_hook_of_another_role_with_a_line(project):
    with_roles(project)
    r1 = release_of(project.ok("test", "deploy"))
    proc = project.ok("test", "deploy", "--roles", "worker")
    r2 = release_of(proc)
    assert project.current(WORKER) == f"releases/{r2}"
    assert project.current("web1") == project.current("web2") == f"releases/{r1}"
    assert "(once, roles: web) matches no host of this run: skipped" in proc.stdout
    assert marks(project, WORKER) >= {f"restarted-{r2}", f"supervised-{r2}"}
    assert f"migrated-{r2}" not in marks(project, "web1")
    listed = project.ok("test", "releases", "--roles", "worker")
    assert "web3:" in listed.stdout and "web1:" not in listed.stdout
    back = project.ok("test", "rollback", "--roles", "worker")
    assert {project.current(n) for n in ("web1", "web2", WORKER)} == {f"releases/{r1}"}
    assert "rolled back test to" in back.stdout and "(1 host(s))" in back.stdout


PY_ROLES = """
from atomicdeploy import Hooks, namespace

hooks = Hooks()


@hooks.after("switch", roles=["worker"])
def restart_workers(c, cfg):
    c.run(f"touch {cfg.host.deploy_path}/py-worker-{cfg.release}")


@hooks.after("upload")
def everywhere(c, cfg):
    c.run(f"touch {cfg.host.deploy_path}/py-every-{cfg.release}")


ns = namespace(hooks=hooks)
"""


def test_python_hooks_run_by_role(project):
    with_roles(project)
    project.config.pop("hooks")
    (project.dir / "fabfile.py").write_text(PY_ROLES)
    r1 = release_of(project.ok("test", "deploy"))
    assert marks(project, "web1") == marks(project, "web2") == {f"py-every-{r1}"}
    assert marks(project, WORKER) == {f"py-every-{r1}", f"py-worker-{r1}"}


@pytest.mark.parametrize(
    "args,words",
    [
        (("--hosts", "web9"), "--hosts: web9 not in stage test (hosts: web1, web2, web3)"),
        (("--roles", "db"), "--roles: no host of stage test has the role db (roles: web, worker)"),
        (("--hosts", "web1", "--roles", "worker"), "no host of stage test matches both"),
    ],
)
@pytest.mark.parametrize(
    "task", ["deploy", "rollback", "switch", "status", "releases", "unlock", "run"]
)
def test_a_bad_selection_is_exit_2_before_any_connection(project, task, args, words):
    with_roles(project)
    extra = {"run": ("--cmd", "true"), "switch": ("--release", "20261201T000000Z")}.get(task, ())
    proc = project.fab("test", task, *args, *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not project.known_hosts.exists()  # no host was contacted
    assert not project.srv.exists()


def test_run_collects_each_hosts_output_and_exit_status_with_secrets_masked(project):
    with_roles(project)
    project.config["secrets"] = {"token": "s3cr3t-token-value"}
    project.ok("test", "deploy")
    (project.deploy_path("web2") / "current" / "fail-here").write_text("")
    cmd = 'echo "in $(basename "$PWD") s3cr3t-token-value"; [ -f fail-here ] && exit 3; true'
    proc = project.fab("test", "run", "--cmd", cmd)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name in ("web1", "web2", WORKER):
        assert f"[{name}] in current ***" in proc.stdout
    assert "s3cr3t-token-value" not in proc.stdout + proc.stderr
    assert re.search(r"web1\s+0\b", proc.stdout) and re.search(r"web2\s+3\b", proc.stdout)
    assert "[web2] failed at step 'run' (not live): exit 3" in proc.stderr
    workers = project.ok("test", "run", "--roles", "worker", "--cmd", "echo only-here")
    assert "[web3] only-here" in workers.stdout and "[web1]" not in workers.stdout


def test_a_dry_run_of_a_selection_plans_only_its_hosts(project):
    with_roles(project)
    project.ok("test", "deploy")
    before = {n: project.releases(n) for n in ("web1", "web2", WORKER)}
    proc = project.ok("test", "deploy", "--roles", "web", "--dry-run")
    assert "[web1]" in proc.stdout and "[web2]" in proc.stdout
    assert "[web3] " not in proc.stdout
    assert {n: project.releases(n) for n in before} == before


def _own_terminal() -> None:
    """The pty becomes the child's controlling terminal, as a login terminal is."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_ssh_opens_a_login_shell_in_the_live_release(project):
    with_roles(project)
    project.ok("test", "deploy")
    project.write_inventory()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*FAB, "test", "ssh", "--host", "web2"],
        cwd=project.dir,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "dumb"},
        preexec_fn=_own_terminal,
    )
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        elif not sent and b"current" in out:  # the prompt is up and quiet: type, then leave
            os.write(master, b'echo "at $PWD: $((6 * 7))"\r')
            time.sleep(0.5)
            os.write(master, b"exit 7\r")
            sent = True
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(out.decode(errors="replace")) from None
    os.close(master)
    text = out.decode(errors="replace")
    assert f"at {project.deploy_path('web2')}/current: 42" in text, text
    assert code == 7


# --- under load: two web hosts with nginx + php-fpm, one worker with neither -----------------


@pytest.fixture
def stage(tmp_path, sshd_hosts):
    config = {"shared_dirs": ["storage"], "shared_files": [".env"], "keep_releases": 3}
    project = example_project(tmp_path, list(sshd_hosts)[:3], config)
    with_roles(project)
    paths = [project.deploy_path(name) for name in WEB]
    with WebHosts(tmp_path / "web", paths, names=list(WEB)) as webs:
        for name, web in zip(WEB, webs, strict=True):
            settings = web.inventory_settings()
            if name == "web1":  # config: turns them on for the stage; the worker turns them off
                project.config.update(settings)
            else:
                project.overrides[name].update(settings)
        project.overrides[WORKER].update(nginx=False, opcache=False)
        project.webs = list(webs)
        yield project


def test_web_hosts_and_a_worker_go_live_in_one_go_live_under_load(stage):
    r1 = release_of(stage.ok("test", "deploy"))
    assert not (stage.deploy_path(WORKER) / "root_dir.nginx.conf").exists()
    set_version(stage.app, "2")
    proc, verdict = under_load(stage, "test", "deploy", expected="2")
    r2 = release_of(proc)
    assert r2 != r1
    assert {stage.current(n) for n in (*WEB, WORKER)} == {f"releases/{r2}"}
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    assert f"restarted-{r2}" in marks(stage, WORKER)
    assert "switch skew:" in proc.stdout  # one armed go-live for all three hosts
