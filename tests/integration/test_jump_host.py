"""A host reached through a jump host (ssh_config `ProxyJump`): every hop's key is checked.

One test sshd host is the jump host for another. The jump host's key is recorded in the
inventory's known_hosts on first use, and a changed key stops the deploy with one line
naming the jump host, before anything reaches the target.
"""

from __future__ import annotations

import textwrap

import pytest

from tests import faults

pytestmark = pytest.mark.integration


def through_jump_host(project, tmp_path):
    """The project's second host, reached only through its first; returns (jump, target)."""
    jump, target = project.hosts[0], project.hosts[1]
    config = tmp_path / "ssh_config"
    config.write_text(
        textwrap.dedent(f"""\
        Host jump
          HostName 127.0.0.1
          Port {jump.port}
          User {jump.user}
          IdentityFile {jump.key}
        Host behind-jump
          HostName 127.0.0.1
          Port {target.port}
          User {target.user}
          IdentityFile {target.key}
          ProxyJump jump
        """)
    )
    project.hosts = [target]
    project.overrides = {
        target.name: {
            "hostname": "behind-jump",
            "port": None,
            "remote_user": None,
            "identity_file": None,
        }
    }
    project.config["ssh_config"] = str(config)
    return jump, target


def key_line(name: str, host) -> str:
    kind, blob = (host.dir / "host_key.pub").read_text().split()[:2]
    return f"{name} {kind} {blob}\n"


def test_a_deploy_through_a_jump_host_records_the_jump_hosts_key(project, tmp_path):
    jump, target = through_jump_host(project, tmp_path)
    project.ok("test", "deploy")
    assert project.served(target.name) == "<?php echo 'version 1';\n"
    recorded = project.known_hosts.read_text()
    assert key_line(f"[127.0.0.1]:{jump.port}", jump) in recorded
    assert key_line(f"[127.0.0.1]:{target.port}", target) in recorded


def test_a_changed_jump_host_key_is_refused_naming_the_jump_host(project, tmp_path, sshd_hosts):
    jump, target = through_jump_host(project, tmp_path)
    other = next(h for h in sshd_hosts if h.name not in (jump.name, target.name))
    project.known_hosts.write_text(key_line(f"[127.0.0.1]:{jump.port}", other))
    before = project.known_hosts.read_text()
    proc = project.fab("test", "deploy")
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"[{target.name}]")]
    problems = []
    if proc.returncode != 1 or len(lines) != 1:
        problems.append(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    elif (
        f"jump host 127.0.0.1:{jump.port}: host key of 127.0.0.1:{jump.port} has changed"
        not in lines[0]
        or "ssh-keygen -R" not in lines[0]
    ):
        problems.append(f"the line does not name the jump host: {lines[0]}")
    if project.deploy_path(target.name).exists():
        problems.append("the target was reached although the jump host's key had changed")
    if project.known_hosts.read_text() != before:
        problems.append("known_hosts was changed")
    faults.record(
        "security",
        "jump host (ProxyJump) presents a changed host key",
        violations=len(problems),
        outcome="refused: exit 1, one line naming the jump host; target untouched"
        if not problems
        else problems[0][:100],
    )
    assert problems == []


def test_a_dry_run_through_a_jump_host_records_no_key(project, tmp_path):
    through_jump_host(project, tmp_path)
    project.ok("test", "deploy", "--dry-run")
    assert not project.known_hosts.exists() or project.known_hosts.read_text() == ""
