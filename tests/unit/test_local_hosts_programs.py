"""Where the fake hosts' OpenSSH programs are found: never at one system's fixed path.

sshd sits in an sbin directory outside a normal user's PATH on most systems, and in a
different one on others; a variable names an install elsewhere, and a missing program is
one error naming the package to install. No sshd is started here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atomicdeploy.testing import ProgramMissing, hosts


def program(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def bare_system(tmp_path, monkeypatch):
    """A PATH and sbin directories holding nothing but what a test puts there."""
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(hosts, "SBIN_DIRS", (str(tmp_path / "sbin"),))
    monkeypatch.delenv("ATOMICDEPLOY_SSHD", raising=False)
    monkeypatch.delenv("ATOMICDEPLOY_SSH_KEYGEN", raising=False)
    return tmp_path


def test_sshd_outside_path_is_found_in_an_sbin_directory(bare_system):
    sshd = program(bare_system / "sbin", "sshd")
    assert hosts.find_sshd() == str(sshd)


def test_path_comes_before_the_sbin_directories(bare_system):
    program(bare_system / "sbin", "sshd")
    sshd = program(bare_system / "bin", "sshd")
    assert hosts.find_sshd() == str(sshd)


def test_the_variable_names_an_sshd_anywhere(bare_system, monkeypatch):
    program(bare_system / "sbin", "sshd")
    mine = program(bare_system / "opt" / "openssh" / "sbin", "sshd")
    monkeypatch.setenv("ATOMICDEPLOY_SSHD", str(mine))
    assert hosts.find_sshd() == str(mine)


def test_a_variable_naming_no_program_is_refused_not_ignored(bare_system, monkeypatch):
    program(bare_system / "sbin", "sshd")
    monkeypatch.setenv("ATOMICDEPLOY_SSHD", str(bare_system / "nowhere" / "sshd"))
    with pytest.raises(ProgramMissing, match=r"ATOMICDEPLOY_SSHD=.*nowhere/sshd"):
        hosts.find_sshd()


def test_missing_sshd_says_what_to_install(bare_system):
    with pytest.raises(ProgramMissing) as info:
        hosts.find_sshd()
    message = str(info.value)
    assert "install openssh-server" in message and "ATOMICDEPLOY_SSHD" in message
    assert "\n" not in message


def test_missing_ssh_keygen_says_what_to_install(bare_system):
    with pytest.raises(ProgramMissing, match=r"ssh-keygen .*install openssh-client"):
        hosts.find_ssh_keygen()


def test_a_group_with_no_sshd_fails_before_starting_any_host(bare_system):
    program(bare_system / "bin", "ssh-keygen")
    group = hosts.LocalHosts(bare_system / "hosts", 2)
    with pytest.raises(ProgramMissing, match="sshd"):
        group.start()
    assert not (bare_system / "hosts").exists()
    assert all(h.proc is None for h in group)


def test_the_found_path_is_absolute(bare_system, monkeypatch):
    """sshd refuses to run from a relative path (it re-executes itself per connection)."""
    program(bare_system / "rel" / "bin", "sshd")
    monkeypatch.chdir(bare_system / "rel")
    monkeypatch.setenv("PATH", "bin")
    assert os.path.isabs(hosts.find_sshd())
