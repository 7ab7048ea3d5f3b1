"""The sshd test kit itself: every fake host is its own sshd, on a port of its own.

Two hosts given one port used to look fine: the second sshd failed to bind, but the
first one answered on the port while the kit waited, so the second host "started";
each login meant for it then met the first host's keys and failed with
"Authentication failed" (one fresh host in some 30-host runs).
"""

from __future__ import annotations

import paramiko
import pytest

from atomicdeploy.testing import LocalHosts
from atomicdeploy.testing import hosts as kit

pytestmark = pytest.mark.integration


def test_free_ports_are_all_different():
    for _ in range(200):
        ports = kit.free_ports(30)
        assert len(set(ports)) == 30


def login(host: kit.LocalHost) -> str:
    """Log in with the host's own key and run one command; return its output."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1",
        port=host.port,
        username=host.user,
        key_filename=str(host.key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    try:
        _, out, _ = client.exec_command("echo ok </dev/null")
        return out.read().decode().strip()
    finally:
        client.close()


def test_a_host_whose_port_another_sshd_holds_does_not_start(tmp_path):
    with LocalHosts(tmp_path / "a", 1, prefix="a") as first:
        second = kit.LocalHost(
            name="b1",
            port=first[0].port,
            dir=tmp_path / "b" / "b1",
            key=tmp_path / "b" / "b1" / "client_key",
            deploy_path=tmp_path / "b" / "srv",
            user=first[0].user,
        )
        with pytest.raises(kit.PortTaken, match=f"port {first[0].port} is taken"):
            second.start(kit.find_sshd())
        assert second.proc is not None and second.proc.poll() is not None
        assert login(first[0]) == "ok"


def test_hosts_whose_chosen_port_was_taken_meanwhile_move_to_another(
    tmp_path, monkeypatch, taken_port
):
    real, calls = kit.free_ports, []

    def first_taken(count: int) -> list[int]:  # the first choice only
        calls.append(count)
        return [taken_port] * count if len(calls) == 1 else real(count)

    monkeypatch.setattr(kit, "free_ports", first_taken)
    with LocalHosts(tmp_path, 2, prefix="m") as hosts:
        ports = [h.port for h in hosts]
        assert taken_port not in ports and len(set(ports)) == 2
        assert [login(h) for h in hosts] == ["ok", "ok"]


def test_given_ports_are_kept_even_if_taken(tmp_path, taken_port):
    """A caller's own port (the demo's fixed ones) is never silently changed."""
    with pytest.raises(kit.PortTaken), LocalHosts(tmp_path, 1, ports=[taken_port]):
        pass


def test_thirty_hosts_each_let_in_only_their_own_key(tmp_path):
    with LocalHosts(tmp_path, 30, prefix="n") as hosts:
        assert len({h.port for h in hosts}) == 30
        assert all(login(h) == "ok" for h in hosts)
        other = kit.LocalHost(
            name="x",
            port=hosts[0].port,
            dir=hosts[1].dir,
            key=hosts[1].key,
            deploy_path=hosts[1].deploy_path,
            user=hosts[1].user,
        )
        with pytest.raises(paramiko.AuthenticationException):
            login(other)
