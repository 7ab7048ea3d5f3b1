"""What a user types: stages, --list, usage errors, inventory selection, host keys, ssh_config."""

from __future__ import annotations

import re
import subprocess
import textwrap

import pytest

from atomicdeploy.testing import LocalHosts

from .conftest import FAB, REPO

pytestmark = pytest.mark.integration


def test_list_shows_each_stage_with_its_hosts(project):
    project.overrides = {"web3": {"labels": {"stage": "staging"}}}
    out = project.ok("--list").stdout
    assert re.search(r"^  test +Select stage test: web1, web2\.$", out, re.M)
    assert re.search(r"^  staging +Select stage staging: web3\.$", out, re.M)
    for name in ("deploy", "rollback", "releases", "status", "unlock", "tag-release"):
        assert f"  {name} " in out


def test_deploy_without_a_stage_is_a_usage_error(project):
    proc = project.fab("deploy")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "no stage selected: run e.g. `fab test deploy` (stages: test)"


def test_an_unknown_stage_is_a_usage_error_naming_the_stages(project):
    proc = project.fab("deploy", "--stage", "prod")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "inventory.yml: stage 'prod' has no hosts (stages: test)"


def test_dash_h_is_refused(project):
    proc = project.fab("-H", "127.0.0.1", "test", "deploy")
    assert proc.returncode == 2
    assert "do not combine it with -H" in proc.stderr


@pytest.mark.parametrize(
    ("inventory", "message"),
    [
        (
            "hosts:\n  web1: {deploy_path: /srv/a, keep_release: 3}\n",
            "inventory.yml: host web1: unknown key 'keep_release' (did you mean 'keep_releases'?)",
        ),
        (
            "hosts:\n  web1: {deploy_path: srv/a}\n",
            "inventory.yml: host web1: deploy_path must be an absolute path or ~/path, not 'srv/a'",
        ),
        (
            "hosts:\n  web1: {deploy_path: /srv/a}\n  web1: {deploy_path: /srv/b}\n",
            "duplicate key 'web1'",
        ),
        ("hosts: [web1\n", "inventory.yml: invalid YAML at line"),
        ("", "inventory.yml: the file is empty"),
    ],
)
def test_a_bad_inventory_is_one_line_exit_2_and_no_traceback(project, inventory, message):
    (project.dir / "inventory.yml").write_text(inventory)
    proc = subprocess.run(
        [*FAB, "--list"],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_inventory_chosen_by_env_var_or_option(project):
    inv = project.write_inventory()
    other = project.dir / "deploy" / "hosts.yml"
    other.parent.mkdir()
    other.write_text(inv.read_text().replace("source: app", f"source: {project.app}"))
    inv.unlink()
    env = {"ATOMICDEPLOY_INVENTORY": str(other)}
    proc = subprocess.run(
        [*FAB, "test", "deploy"],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**_env(), **env},
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [*FAB, "deploy", "--stage", "test", "--inventory", str(other)],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert all(len(project.releases(h.name)) == 2 for h in project.hosts)


def _env() -> dict:
    import os

    return dict(os.environ)


def test_unknown_host_key_is_recorded_and_a_changed_one_refused(project, tmp_path):
    with LocalHosts(tmp_path / "rekey", 1, prefix="rekey") as hosts:
        project.hosts = list(hosts)
        project.ok("test", "deploy")
        recorded = project.known_hosts.read_text()
        assert f"[127.0.0.1]:{hosts[0].port} ssh-ed25519 " in recorded
        # Same address, new host key: as OpenSSH's accept-new, refuse.
        (hosts[0].dir / "host_key").unlink()
        (hosts[0].dir / "host_key.pub").unlink()
        hosts[0].restart()
        before = project.releases("rekey1")
        proc = project.fab("test", "deploy")
        assert proc.returncode == 1
        assert "host key of 127.0.0.1:" in proc.stderr and "has changed" in proc.stderr
        assert "ssh-keygen -R" in proc.stderr
        assert project.releases("rekey1") == before
        assert project.known_hosts.read_text() == recorded


def test_ssh_config_aliases_are_honoured_by_fabric_and_rsync(project, tmp_path):
    config = tmp_path / "ssh_config"
    blocks = []
    overrides = {}
    for h in project.hosts:
        blocks.append(
            textwrap.dedent(f"""\
            Host alias-{h.name}
              HostName 127.0.0.1
              Port {h.port}
              User {h.user}
              IdentityFile {h.key}
            """)
        )
        overrides[h.name] = {
            "hostname": f"alias-{h.name}",
            "port": None,
            "remote_user": None,
            "identity_file": None,
        }
    config.write_text("\n".join(blocks))
    project.overrides = overrides
    project.config["ssh_config"] = str(config)
    project.ok("test", "deploy")
    assert all(project.served(h.name) == "<?php echo 'version 1';\n" for h in project.hosts)


def test_the_repository_fabfile_lists_the_demo_stage():
    proc = subprocess.run(
        [*FAB, "--list"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout and "deploy" in proc.stdout


def test_a_terminal_gets_a_live_progress_table_and_ci_gets_plain_lines(project):
    import os
    import pty

    project.write_inventory()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TERM"] = "xterm"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*FAB, "test", "deploy"],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(60) == 0
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[2K" in screen  # rows redrawn in place
    assert "phase" in screen and "prepare" in screen and "done (" in screen
    assert "deployed " in screen  # held lines and the summary still come out
    plain = project.ok("test", "deploy", env={"CI": "true"})
    assert "\x1b[" not in plain.stdout
    assert "[web1] live: current -> releases/" in plain.stdout
