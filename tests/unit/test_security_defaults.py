"""Security defaults: host keys, no agent forwarding, `sudo -n` only, masked secrets."""

from __future__ import annotations

import io
import re
import shlex

from fabric import Config as FabricConfig

from atomicdeploy import shell
from atomicdeploy.inventory import HostConfig, NginxConfig, OpcacheConfig, parse
from atomicdeploy.layout import Layout
from atomicdeploy.remote import connect
from atomicdeploy.report import Reporter
from atomicdeploy.secrets import Masker
from tests import faults


def test_agent_forwarding_is_off_unless_asked():
    (host,) = parse("hosts:\n  web1: {deploy_path: /srv/app}\n").hosts
    assert host.forward_agent is False
    conn = connect(host, FabricConfig())  # builds, does not connect
    assert conn.forward_agent is False
    faults.record(
        "security",
        "agent forwarding by default",
        outcome="off (the upload uses the same connection)",
    )


def test_the_upload_has_no_ssh_of_its_own():
    """rsync's remote shell is the local relay onto the Fabric connection, whose host key
    check and login are the only ones: no second client with settings of its own."""
    argv = shell.rsync_argv("/src", "web1", "/srv/app/.dep/upload", ssh=shell.tunnel_rsh())
    rsh = argv[argv.index("--rsh") + 1]
    assert rsh == shlex.join(shell.tunnel_rsh())
    assert "ssh" not in shlex.split(rsh)


def test_every_sudo_we_emit_or_default_to_is_sudo_n():
    texts = [NginxConfig().test, NginxConfig().reload, OpcacheConfig().reload]
    texts.append(
        shell.make_writable(
            Layout("/srv/app"), "R1", ["storage"], "chown", http_user="www-data", use_sudo=True
        )
    )
    for text in texts:
        for m in re.finditer(r"\bsudo\b(\s+\S+)?", text):
            assert m.group(1) and m.group(1).strip() == "-n", text
    faults.record(
        "security",
        "sudo in defaults and commands",
        tries=len(texts),
        outcome="always `sudo -n`: fails at once, never a password prompt",
    )


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
    faults.record(
        "security",
        "secrets in progress, warning, error and table lines",
        tries=5,
        outcome="masked as ***",
    )
