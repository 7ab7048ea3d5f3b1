"""Security defaults (issue 6): host keys, no agent forwarding, `sudo -n` only, masked secrets."""

from __future__ import annotations

import io
import re

from fabric import Config as FabricConfig

from atomicdeploy import commands
from atomicdeploy.inventory import HostConfig, NginxConfig, OpcacheConfig, parse
from atomicdeploy.layout import Layout
from atomicdeploy.remote import KnownHosts, connect
from atomicdeploy.report import Reporter
from atomicdeploy.secrets import Masker
from tests import faults


def test_agent_forwarding_is_off_unless_asked():
    (host,) = parse("hosts:\n  web1: {deploy_path: /srv/app}\n").hosts
    assert host.forward_agent is False
    conn = connect(host, FabricConfig(), KnownHosts())  # builds, does not connect
    assert conn.forward_agent is False
    assert "ForwardAgent=no" in commands.ssh_argv(port=None, user=None, identity_files=[],
                                                  known_hosts="/kh", ssh_config=None,
                                                  connect_timeout=5)  # fmt: skip
    faults.record("security", "agent forwarding by default", outcome="off (Fabric and rsync)")


def test_rsync_ssh_never_prompts_and_checks_host_keys():
    argv = commands.ssh_argv(port=None, user=None, identity_files=[], known_hosts="/kh",
                             ssh_config=None, connect_timeout=5)  # fmt: skip
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=accept-new" in argv


def test_every_sudo_we_emit_or_default_to_is_sudo_n():
    texts = [NginxConfig().test, NginxConfig().reload, OpcacheConfig().reload]
    texts.append(commands.make_writable(Layout("/srv/app"), "R1", ["storage"], "chown",
                                        http_user="www-data", use_sudo=True))  # fmt: skip
    for text in texts:
        for m in re.finditer(r"\bsudo\b(\s+\S+)?", text):
            assert m.group(1) and m.group(1).strip() == "-n", text
    faults.record("security", "sudo in defaults and commands", tries=len(texts),
                  outcome="always `sudo -n`: fails at once, never a password prompt")


def test_a_commands_timeout_exists_by_default():
    assert HostConfig(name="h", deploy_path="/srv/app", hostname="h").command_timeout == 900


def test_secrets_are_masked_in_every_kind_of_line():
    out, err = io.StringIO(), io.StringIO()
    r = Reporter(out, err, live=False, mask=Masker.of(["hunter2", "https://hooks.x/T0K"]).mask)
    r.host("web1", "password hunter2")
    r.warn("web1", "webhook https://hooks.x/T0K failed")
    r.line("hunter2")
    r.error("[web1] failed: hunter2")
    r.table(["k", "v"], [["a", "hunter2"]])
    text = out.getvalue() + err.getvalue()
    assert "hunter2" not in text and "T0K" not in text
    assert text.count("***") == 5
    faults.record("security", "secrets in progress, warning, error and table lines", tries=5,
                  outcome="masked as ***")
