"""commands: the exact shell text, and what that text really does when `sh` runs it.

The behaviour tests run every script locally with `sh -c` inside `tmp_path`, under deploy
paths full of spaces, quotes, `$(...)`, backticks and unicode. Nothing here uses SSH.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import stat
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atomicdeploy import remote, shell, tunnel
from atomicdeploy.config import Config, RunInfo
from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory import HostConfig
from atomicdeploy.layout import Layout, check_relative_path, check_release_name
from atomicdeploy.releases import LogEntry, fold, parse_log, parse_state
from atomicdeploy.steps.lock import describe_owner, owner_record
from atomicdeploy.steps.switch import Fire
from atomicdeploy.streams import Asking
from tests import faults
from tests.local_transport import LocalTransport

q = shlex.quote
APP = Layout("/srv/app")
HOSTILE = Layout("/srv/my app/it's $(x)")

# Last components of a deploy path, each a way to break naive quoting. `touch pwned`
# (cwd is tmp_path) is how a successful injection would show itself.
HOSTILE_DIRS = [
    "app",
    "my app",
    "it's",
    'say "hi"',
    "$(touch pwned)",
    "`touch pwned`",
    "ünïcødé ☃ 日本",
    "-rf --no-preserve-root",
    "a;b&&c|d>e<f*?[x]{y}~!#%",
    "tab\there $HOME \\ back\\'slash",
    'nest/my app/it\'s "q" $(touch pwned) `touch pwned` ü; touch pwned',
]


# --- helpers ----------------------------------------------------------------------------------


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(home)}


def sh(script: str, cwd: Path, *, via: str = "sh") -> subprocess.CompletedProcess:
    """Run a script the way it would run on a host.

    `sh`: `sh -c SCRIPT`; `remote-sh`/`remote-bash`: the `shell.remote()` line, as a
    login shell (dash or bash) on the host would parse it.
    """
    fed = None
    if via == "sh":
        argv = ["sh", "-c", script]
    elif via in ("remote-sh", "remote-bash"):
        argv = [via.removeprefix("remote-"), "-c", shell.remote()]
        fed = shell.script_payload(script).decode()
    else:  # pragma: no cover
        raise AssertionError(via)
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_env(cwd),
        input=fed,
        stdin=None if fed else subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def pwned_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith("pwned")]


def _outside_single_quotes(script: str) -> str:
    """The text of a sh script that the shell interprets: single-quoted text is dropped.

    Enough of a sh lexer for the scripts commands emits: single quotes, double quotes,
    backslashes and `$( ... )` (which starts unquoted context again inside double quotes).
    """
    out: list[str] = []
    stack = ["top"]
    i = 0
    while i < len(script):
        ch, ctx = script[i], stack[-1]
        if ctx == "dq":
            if ch == "\\":
                out.append(script[i : i + 2])
                i += 2
            elif script.startswith("$(", i):
                stack.append("sub")
                out.append("$(")
                i += 2
            else:
                if ch == '"':
                    stack.pop()
                out.append(ch)
                i += 1
            continue
        if ch == "'":
            end = script.index("'", i + 1)
            out.append("\x00")  # placeholder for the quoted text
            i = end + 1
        elif ch == "\\":
            out.append(script[i : i + 2])
            i += 2
        elif ch == '"':
            stack.append("dq")
            out.append(ch)
            i += 1
        elif script.startswith("$(", i):
            stack.append("sub")
            out.append("$(")
            i += 2
        else:
            if ch == ")" and ctx == "sub":
                stack.pop()
            out.append(ch)
            i += 1
    assert stack == ["top"], f"unbalanced quoting in {script!r}"
    return "".join(out)


@pytest.fixture
def sandbox(tmp_path):
    """tmp_path as cwd for every script; afterwards no injected `touch pwned` ran anywhere."""
    yield tmp_path
    assert pwned_files(tmp_path) == [], "a command substitution in a path was executed"


@pytest.fixture(params=HOSTILE_DIRS)
def layout(request, sandbox) -> Layout:
    """A layout under a hostile deploy path inside the sandbox, with setup done."""
    deploy = sandbox / "srv" / request.param
    deploy.parent.mkdir(parents=True, exist_ok=True)
    lay = Layout(str(deploy))
    res = sh(shell.setup(lay), sandbox)
    assert res.returncode == 0, res.stderr
    return lay


def make_release(lay: Layout, name: str, files: dict[str, str] | None = None) -> Path:
    root = Path(lay.release(name))
    root.mkdir(parents=True)
    for rel, text in (files or {}).items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root


def point_current(lay: Layout, name: str) -> None:
    os.symlink(lay.current_target(name), lay.current)


def make_cfg(deploy_path: str, *, token: str = "tok-0123456789abcdef", user: str = "alice"):
    host = HostConfig(name="web1", deploy_path=deploy_path, hostname="web1")
    run = RunInfo(
        stage="prod",
        user=user,
        local_host="laptop",
        pid=42,
        started="2026-11-22T10:15:00Z",
        token=token,
    )
    return Config(host=host, run=run)


def test_the_injection_detector_works(tmp_path):
    """Guard for the guards: an unquoted path really would leave a `pwned` file behind."""
    res = sh("ls -d /tmp/$(touch pwned) `touch pwned2` >/dev/null", tmp_path)
    assert res.returncode == 0
    assert sorted(p.name for p in pwned_files(tmp_path)) == ["pwned", "pwned2"]
    assert _outside_single_quotes("ls /tmp/$(x)") == "ls /tmp/$(x)"
    assert "$(x)" not in _outside_single_quotes(f"ls {q('/tmp/$(x)')}")
    for f in pwned_files(tmp_path):
        f.unlink()


# --- exact strings for /srv/app ---------------------------------------------------------------


def test_switch_exact():
    assert shell.switch(APP, "R1") == (
        "test -d /srv/app/releases/R1 && ln -sfn -- releases/R1 /srv/app/.current.tmp"
        " && mv -fT -- /srv/app/.current.tmp /srv/app/current && readlink -- /srv/app/current"
    )


def test_setup_exact():
    assert shell.setup(APP) == (
        "{ [ -d /srv/app/releases ] && [ -d /srv/app/shared ] && [ -d /srv/app/.dep ]; }"
        " || mkdir -p -- /srv/app/releases /srv/app/shared /srv/app/.dep"
        " && if [ -d /srv/app/current ] && [ ! -L /srv/app/current ]; then"
        " printf '%s\\n' '/srv/app/current is a real directory: move it away so that it can be"
        " an atomic"
        " symlink' >&2; exit 76; fi"
    )


def test_lock_exact():
    assert shell.lock(APP, '{"token": "t1"}') == (
        "if mkdir -- /srv/app/.dep/deploy.lock 2>/dev/null; then"
        " printf '%s\\n' '{\"token\": \"t1\"}' > /srv/app/.dep/deploy.lock/owner;"
        " elif [ -d /srv/app/.dep/deploy.lock ]; then"
        " cat -- /srv/app/.dep/deploy.lock/owner 2>/dev/null; exit 75;"
        " elif [ -f /srv/app/.dep/deploy.lock ]; then"
        " printf 'Deployer (user %s)\\n'"
        ' "$(head -c 200 -- /srv/app/.dep/deploy.lock | head -n 1)";'
        " exit 75;"
        " else mkdir -- /srv/app/.dep/deploy.lock; fi"
    )


def test_unlock_own_exact():
    assert shell.unlock_own(APP, "t1") == (
        'ad_o=; { IFS= read -r ad_o || [ -n "$ad_o" ]; } 2>/dev/null'
        " </srv/app/.dep/deploy.lock/owner;"
        ' case $ad_o in *\'"token": "t1"\'*) rm -rf -- /srv/app/.dep/deploy.lock;; esac'
    )


def test_force_unlock_exact():
    assert shell.force_unlock(APP) == (
        "cat -- /srv/app/.dep/deploy.lock/owner 2>/dev/null ||"
        " { [ -f /srv/app/.dep/deploy.lock ] &&"
        " printf 'Deployer (user %s)\\n'"
        ' "$(head -c 200 -- /srv/app/.dep/deploy.lock | head -n 1)"; };'
        " rm -rf -- /srv/app/.dep/deploy.lock"
    )


def test_append_log_exact():
    assert shell.append_log(APP, '{"a": 1}') == (
        "printf '\\n%s\\n' '{\"a\": 1}' >> /srv/app/.dep/releases.log"
    )


def test_create_release_exact():
    assert shell.create_release(APP, "R1", "LINE") == (
        "mkdir -- /srv/app/releases/R1 && printf '\\n%s\\n' LINE >> /srv/app/.dep/releases.log"
    )


def test_remove_release_exact():
    guard = (
        "if [ /srv/app/current -ef /srv/app/releases/R1 ]; then"
        " printf '%s\\n' 'refusing to remove the live release R1' >&2; exit 78; fi"
    )
    assert shell.remove_release(APP, "R1") == f"{guard}; rm -rf -- /srv/app/releases/R1"
    assert shell.remove_release(APP, "R1", "LINE") == (
        f"{guard}; rm -rf -- /srv/app/releases/R1"
        " && printf '\\n%s\\n' LINE >> /srv/app/.dep/releases.log"
    )


def test_remove_releases_structure():
    script = shell.remove_releases(APP, ["R1", "R2"])
    blocks = script.split("; }; { ")
    assert len(blocks) == 2
    assert script.startswith("{ if [ ") and script.endswith("; }")
    for name, block in zip(["R1", "R2"], blocks, strict=True):
        assert f"-ef /srv/app/releases/{name} ]" in block
        assert f"exit {shell.REFUSED}" in block
        assert f"rm -rf -- /srv/app/releases/{name}" in block
    assert shell.remove_releases(APP, []) == ""


def test_link_shared_dir_exact():
    assert shell.link_shared_dir(APP, "R1", "storage") == (
        "if [ ! -e /srv/app/shared/storage ]; then mkdir -p -- /srv/app/shared &&"
        " if [ -d /srv/app/releases/R1/storage ] && [ ! -L /srv/app/releases/R1/storage ];"
        " then cp -a -- /srv/app/releases/R1/storage /srv/app/shared/storage;"
        " else mkdir -p -- /srv/app/shared/storage; fi; fi"
        " && rm -rf -- /srv/app/releases/R1/storage"
        " && mkdir -p -- /srv/app/releases/R1"
        " && ln -s -- ../../shared/storage /srv/app/releases/R1/storage"
    )


def test_link_shared_dir_nested_structure():
    script = shell.link_shared_dir(APP, "R1", "a/b")
    assert script.endswith("ln -s -- ../../../shared/a/b /srv/app/releases/R1/a/b")
    assert "mkdir -p -- /srv/app/releases/R1/a &&" in script
    assert "mkdir -p -- /srv/app/shared/a &&" in script


def test_link_shared_file_structure():
    script = shell.link_shared_file(APP, "R1", "config/.env")
    assert script.endswith("ln -s -- ../../../shared/config/.env /srv/app/releases/R1/config/.env")
    assert f"exit {shell.SHARED_MISSING}" in script
    assert (
        "'shared file config/.env is missing: create /srv/app/shared/config/.env on the host'"
        in script
    )
    assert (
        "[ -f /srv/app/releases/R1/config/.env ] && [ ! -L /srv/app/releases/R1/config/.env ]"
        in script
    )
    assert "touch" not in script  # a missing file is an error, never an empty file


def _walk(base: str, rel: str, item: str, change: str) -> str:
    """The text make_writable wraps around `change`: reach base/rel part by part."""
    names = " ".join(q(p) for p in rel.split("/"))
    refused = q(f"writable dir {item}: ")
    return (
        f"( cd -P -- {q(base)} && top=$(pwd -P) && at={q(base)} || exit 1;"
        f' for p in {names}; do at="$at/$p";'
        f""" if [ -L "$p" ]; then printf '%s\\n' {refused}"$at"' is a symbolic link: refusing to"""
        f" follow it (nothing was changed through it)' >&2; exit {shell.REFUSED}; fi;"
        ' { [ -d "$p" ] || mkdir -- "$p"; } && cd -P -- "$p" || exit 1; done;'
        f' [ "$(pwd -P)" = "$top"/{q(rel)} ] ||'
        f""" {{ printf '%s\\n' {refused}"$at"' is not where it should be (a link was planted"""
        f" on the way): nothing changed' >&2; exit {shell.REFUSED}; }};"
        f" {change} )"
    )


def test_make_writable_chmod_exact():
    dirs = ["storage", "bootstrap/cache"]
    assert shell.make_writable(APP, "R1", dirs, "chmod") == (
        _walk("/srv/app/releases/R1", "storage", "storage", "chmod -R ug+rwX -- .")
        + " && "
        + _walk(
            "/srv/app/releases/R1", "bootstrap/cache", "bootstrap/cache", "chmod -R ug+rwX -- ."
        )
    )
    assert shell.make_writable(
        APP, "R1", ["storage"], "chmod", chmod_mode="0775", recursive=False
    ) == (_walk("/srv/app/releases/R1", "storage", "storage", "chmod 0775 -- ."))


def test_make_writable_below_a_shared_dir_works_in_shared_not_through_the_link():
    """The release's `storage` is our link to shared/storage; a writable dir below it is
    reached from shared/ itself, so every part on the way is checked."""
    script = shell.make_writable(
        HOSTILE,
        "R1",
        ["storage/logs", "var/cache"],
        "chmod",
        shared_dirs=["var", "storage", "storage/app"],
    )
    assert script == (
        _walk(HOSTILE.shared, "storage/logs", "storage/logs", "chmod -R ug+rwX -- .")
        + " && "
        + _walk(HOSTILE.shared, "var/cache", "var/cache", "chmod -R ug+rwX -- .")
    )
    inside = shell.make_writable(
        APP, "R1", ["storage/app/public"], "chmod", shared_dirs=["storage/app"]
    )
    assert inside.startswith("( cd -P -- /srv/app/shared && ")
    assert "for p in storage app public;" in inside
    # `storagefoo` is not below `storage`.
    other = shell.make_writable(APP, "R1", ["storagefoo"], "chmod", shared_dirs=["storage"])
    assert other.startswith("( cd -P -- /srv/app/releases/R1 && ")


def test_make_writable_chown_structure():
    script = shell.make_writable(APP, "R1", ["storage"], "chown", http_user="www-data")
    assert script == _walk(
        "/srv/app/releases/R1", "storage", "storage", "chown -R -P www-data -- ."
    )
    sudo = shell.make_writable(APP, "R1", ["storage"], "chown", http_user="www-data", use_sudo=True)
    assert sudo.endswith("; sudo -n chown -R -P www-data -- . )")
    flat = shell.make_writable(
        APP, "R1", ["storage"], "chown", http_user="www-data", recursive=False, use_sudo=True
    )
    assert "-R" not in flat and "sudo -n chown www-data -- ." in flat


def test_make_writable_acl_structure():
    script = shell.make_writable(APP, "R1", ["storage"], "acl", http_user="www-data")
    spec = 'u:www-data:rwX,u:"$(id -un)":rwX'
    assert script == _walk(
        "/srv/app/releases/R1",
        "storage",
        "storage",
        f"setfacl -R -P -m {spec} -- . && setfacl -R -P -d -m {spec} -- .",
    )
    # `$(id -un)` is the one expansion that happens on the host, on purpose.
    assert "$(id -un)" in _outside_single_quotes(script)


def test_make_writable_skip_and_nothing_to_do():
    assert shell.make_writable(APP, "R1", ["storage"], "skip") is None
    assert shell.make_writable(APP, "R1", [], "chmod") is None


def test_make_writable_unknown_mode():
    with pytest.raises(ValueError, match="unknown writable mode"):
        shell.make_writable(APP, "R1", ["storage"], "sudo-chmod")


def test_read_state_structure():
    script = shell.read_state(APP)
    positions = [script.index(f"echo {m}") for m in shell.STATE_MARKERS]
    assert positions == sorted(positions)
    assert "readlink -- /srv/app/current" in script
    assert "for ad_d in /srv/app/releases/* " in script
    assert script.endswith("; true")


def _state_tree(root: Path) -> Layout:
    """A deploy path with every kind of entry `releases/` can hold, and foreign leftovers."""
    lay = Layout(str(root))
    rel = root / "releases"
    for name in ("20260101000000", "20260102000000", ".hidden", "-x", "a\nb"):
        (rel / name).mkdir(parents=True)
    (rel / "a file").write_text("")
    outside = root / "outside"
    (outside / "BAD_RELEASE").mkdir(parents=True)
    (rel / "20260103000000").symlink_to(outside)
    (rel / "20260101000000" / "BAD_RELEASE").write_text("")
    (rel / "a\nb" / "BAD_RELEASE").write_text("")
    (rel / "20260102000000" / "REVISION").write_text("0123456789abcdef0123456789abcdef01234567")
    (root / "current").symlink_to("releases/20260102000000")
    return lay


def test_read_state_lists_real_directories_and_foreign_marks(tmp_path):
    """Hidden directories are listed; a link, a file and a name with a newline are not; a
    BAD_RELEASE is seen only inside a real release directory; a REVISION without a final
    newline is read; a FIFO where a foreign log would be does not hang the read."""
    lay = _state_tree(tmp_path)
    os.mkfifo(tmp_path / "revisions.log")
    res = sh(shell.read_state(lay), tmp_path)
    state = parse_state(res.stdout, shell.STATE_MARKERS)
    assert res.returncode == 0, res.stderr
    assert sorted(r.name for r in state.releases) == sorted(
        ["20260101000000", "20260102000000", ".hidden", "-x"]
    )
    foreign = res.stdout.split(shell.STATE_MARKERS[-1], 1)[1].split("\n")
    assert "B 20260101000000/BAD_RELEASE" in foreign
    assert not [line for line in foreign if "20260103000000" in line]
    assert "B a" not in foreign and "b/BAD_RELEASE" not in foreign
    revision = f"R {lay.releases}/20260102000000/REVISION:0123456789abcdef0123456789abcdef01234567"
    assert revision in foreign


def test_a_host_no_other_tool_touched_starts_three_processes_to_read_its_state(tmp_path):
    """Every run reads every host's state first, and each process started costs a host
    about a millisecond: on a host that Deployer or Capistrano never touched, the read
    starts readlink, tail and cat only (each tool on the PATH logs that it ran)."""
    lay = _state_tree(tmp_path)
    (tmp_path / ".dep").mkdir()
    (tmp_path / ".dep" / "releases.log").write_text("\n20260102000000 complete t\n")
    (tmp_path / "releases" / "20260102000000" / "REVISION").unlink()
    bin_dir, ran = tmp_path / "bin", tmp_path / "ran"
    bin_dir.mkdir()
    for tool in ("readlink", "tail", "cat", "find", "grep", "sed", "head", "mkdir", "ls"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\necho {tool} >> {ran}\nexec /usr/bin/{tool} "$@"\n')
        wrapper.chmod(0o755)
    script = shell.read_state(lay)
    res = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(ran.read_text().split()) == ["cat", "readlink", "tail"]
    state = parse_state(res.stdout, shell.STATE_MARKERS)
    assert state.current == "20260102000000"
    assert "20260102000000" in {r.name for r in state.releases}


def test_remote_is_a_fixed_line_and_the_script_goes_on_stdin():
    """No script text, so no secret in it, ever reaches a process's arguments."""
    script = shell.switch(HOSTILE, "R1")
    line = shell.remote()
    assert shlex.split(line) == [
        "sh",
        "-c",
        'IFS= read -r ad_n && ad_s=$(head -c "$ad_n") && eval "$ad_s" </dev/null',
    ]
    assert shell.remote(stdin=True) == line.replace(" </dev/null", "")
    data = script.encode()
    assert shell.script_payload(script) == f"{len(data)}\n".encode() + data
    assert shell.script_payload(script, "027") == shell.script_payload(f"umask 027\n{script}")


def test_commands_refuse_hostile_names_and_items():
    for bad in ("../x", "-rf", "", "a/b", ".."):
        with pytest.raises(ConfigError):
            shell.switch(APP, bad)
        with pytest.raises(ConfigError):
            shell.remove_release(APP, bad)
    for bad in ("../x", "/etc", "", "a/../../b"):
        with pytest.raises(ConfigError):
            shell.link_shared_dir(APP, "R1", bad)
        with pytest.raises(ConfigError):
            shell.link_shared_file(APP, "R1", bad)
        with pytest.raises(ConfigError):
            shell.make_writable(APP, "R1", [bad], "chmod")


# --- hostile deploy path: structure -----------------------------------------------------------

HOSTILE_SCRIPTS = {
    "setup": lambda lay: shell.setup(lay),
    "read_state": lambda lay: shell.read_state(lay),
    "lock": lambda lay: shell.lock(lay, '{"user": "o\'brien $(id)"}'),
    "unlock_own": lambda lay: shell.unlock_own(lay, "t1"),
    "force_unlock": lambda lay: shell.force_unlock(lay),
    "append_log": lambda lay: shell.append_log(lay, '{"note": "it\'s `x`"}'),
    "create_release": lambda lay: shell.create_release(lay, "R1", "L"),
    "remove_release": lambda lay: shell.remove_release(lay, "R1", "L"),
    "remove_releases": lambda lay: shell.remove_releases(lay, ["R1", "R2"]),
    "link_shared_dir": lambda lay: shell.link_shared_dir(lay, "R1", "storage"),
    "link_shared_file": lambda lay: shell.link_shared_file(lay, "R1", ".env"),
    "chmod": lambda lay: shell.make_writable(lay, "R1", ["storage"], "chmod"),
    "chown": lambda lay: shell.make_writable(lay, "R1", ["storage"], "chown", http_user="w"),
    "acl": lambda lay: shell.make_writable(lay, "R1", ["storage"], "acl", http_user="w"),
    "switch": lambda lay: shell.switch(lay, "R1"),
}


@pytest.mark.parametrize("what", sorted(HOSTILE_SCRIPTS))
def test_hostile_deploy_path_is_always_quoted(what):
    script = HOSTILE_SCRIPTS[what](HOSTILE)
    exposed = _outside_single_quotes(script)
    for fragment in ("$(x)", "my app", "it's", "o'brien", "`x`"):
        assert fragment not in exposed, f"{what}: {fragment!r} reaches the shell unquoted"
    assert q(HOSTILE.deploy_path) not in script  # every path is quoted whole, suffix included
    plain = _outside_single_quotes(HOSTILE_SCRIPTS[what](APP))
    assert "/srv/app/" in plain  # the lexer does see unquoted text


def test_hostile_deploy_path_quotes_each_full_path():
    assert q(HOSTILE.release("R1")) in shell.switch(HOSTILE, "R1")
    assert q(HOSTILE.current_tmp) in shell.switch(HOSTILE, "R1")
    assert q(HOSTILE.lock_info) in shell.lock(HOSTILE, "{}")
    assert q(HOSTILE.log) in shell.append_log(HOSTILE, "x")
    assert q(HOSTILE.shared_item("storage")) in shell.link_shared_dir(HOSTILE, "R1", "storage")
    assert q(HOSTILE.release("R1")) in shell.make_writable(HOSTILE, "R1", ["storage"], "chmod")
    assert q(HOSTILE.shared) in shell.make_writable(
        HOSTILE, "R1", ["storage"], "chmod", shared_dirs=["storage"]
    )


# --- ssh and rsync argv -----------------------------------------------------------------------


def test_rsync_argv_exact():
    ssh = ["ssh", "-p", "2222", "-o", "UserKnownHostsFile=/k h/kh"]
    argv = shell.rsync_argv(
        "/src",
        "web1.example",
        "/srv/app/releases/R2",
        ssh=ssh,
        exclude=[".git", "node_modules"],
        copy_dest="/srv/app/releases/R1",
    )
    assert argv == [
        "rsync",
        "--archive",
        "--delete",
        "--delete-excluded",
        "-s",
        "--stats",
        "--rsh",
        "ssh -p 2222 -o 'UserKnownHostsFile=/k h/kh'",
        "--modify-window=-1",
        "--exclude",
        ".git",
        "--exclude",
        "node_modules",
        "--copy-dest",
        "/srv/app/releases/R1",
        "--",
        "/src/",
        "web1.example:/srv/app/releases/R2/",
    ]


@pytest.mark.parametrize(
    ("line", "exact"),
    [
        ("rsync  version 3.2.7  protocol version 31", True),
        ("rsync  version v3.2.3  protocol version 31", True),
        ("rsync  version 3.10.0  protocol version 32", True),
        ("rsync  version 3.2.0  protocol version 31", False),
        ("rsync  version 3.1.3  protocol version 31", False),
        ("openrsync: protocol version 29", False),
        ("", False),
    ],
)
def test_rsync_compares_nanoseconds_only_where_it_can(line, exact):
    assert shell.rsync_exact_times(line) is exact
    argv = shell.rsync_argv("/src", "h", "/dst", ssh=["ssh"], exact_times=exact)
    assert ("--modify-window=-1" in argv) is exact
    assert ("--checksum" in argv) is not exact


def test_same_size_same_second_change_is_sent(sandbox):
    """rsync's default quick check would skip this file: same size, same second."""
    src, dst = sandbox / "src", sandbox / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f.php").write_text("version 1")
    os.utime(src / "f.php", ns=(1_000_000_000_100, 1_000_000_000_100))
    argv = shell.rsync_argv(str(src), "h", str(dst), ssh=shell.tunnel_rsh())
    assert tunnel.run_rsync(LocalTransport(), argv, timeout=60).returncode == 0
    (src / "f.php").write_text("version 2")
    os.utime(src / "f.php", ns=(1_000_000_000_900, 1_000_000_000_900))
    for exact in (True, False):
        argv = shell.rsync_argv(str(src), "h", str(dst), ssh=shell.tunnel_rsh(), exact_times=exact)
        assert tunnel.run_rsync(LocalTransport(), argv, timeout=60).returncode == 0
        assert (dst / "f.php").read_text() == "version 2"
        (dst / "f.php").write_text("version 1")
        os.utime(dst / "f.php", ns=(1_000_000_000_100, 1_000_000_000_100))


def test_rsync_argv_variants():
    argv = shell.rsync_argv("/src/", "::1", "/srv/my app/releases/R2", ssh=["ssh"])
    assert argv[-3:] == ["--", "/src/", "[::1]:/srv/my app/releases/R2/"]  # no double slash
    assert "--copy-dest" not in argv and "--exclude" not in argv
    assert argv[argv.index("--rsh") + 1] == "ssh"


def test_rsync_argv_uploads_into_hostile_paths(sandbox):
    """rsync parses --rsh itself and -s keeps the remote shell off the paths: run it for real,
    through the tunnel's relay, with the host's command run locally."""
    src = sandbox / "src it's `touch pwned`"
    (src / "public").mkdir(parents=True)
    (src / "public" / "index.php").write_text("version 2")
    (src / ".git").mkdir()
    lay = Layout(str(sandbox / "srv" / 'my app"s $(touch pwned)'))
    assert sh(shell.setup(lay), sandbox).returncode == 0
    old = make_release(lay, "R1", {"public/index.php": "v1", "public/same.css": "css"})
    (src / "public" / "same.css").write_text("css")
    os.utime(src / "public" / "same.css", (1_000_000, 1_000_000))
    os.utime(old / "public" / "same.css", (1_000_000, 1_000_000))
    argv = shell.rsync_argv(
        str(src),
        "fakehost",
        lay.upload_cache,
        ssh=shell.tunnel_rsh(),
        exclude=[".git"],
        copy_dest=lay.release("R1"),
    )
    res = tunnel.run_rsync(LocalTransport(), argv, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Number of regular files transferred: 1" in res.stdout  # same.css: copied on the host
    Path(lay.release("R2")).mkdir()
    assert sh(shell.fill_release(lay, "R2"), sandbox).returncode == 0
    new = Path(lay.release("R2"))
    assert (new / "public" / "index.php").read_text() == "version 2"
    assert (new / "public" / "same.css").read_text() == "css"
    assert not (new / ".git").exists()
    assert not any(p.name == "pwned" for p in sandbox.rglob("*"))


# --- behaviour: switch ------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["sh", "remote-sh", "remote-bash"])
def test_switch_makes_current_a_relative_symlink(layout, sandbox, via):
    make_release(layout, "20260101T000000Z", {"index.php": "v1"})
    res = sh(shell.switch(layout, "20260101T000000Z"), sandbox, via=via)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "releases/20260101T000000Z\n"
    current = Path(layout.current)
    assert current.is_symlink()
    assert os.readlink(current) == "releases/20260101T000000Z"
    assert (current / "index.php").read_text() == "v1"
    assert not os.path.lexists(layout.current_tmp)


def test_switch_replaces_the_live_link(layout, sandbox):
    make_release(layout, "R1", {"v": "1"})
    make_release(layout, "R2", {"v": "2"})
    assert sh(shell.switch(layout, "R1"), sandbox).returncode == 0
    res = sh(shell.switch(layout, "R2"), sandbox)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "releases/R2\n"
    assert (Path(layout.current) / "v").read_text() == "2"
    # Back again (a rollback uses the same primitive), and nothing left behind.
    assert sh(shell.switch(layout, "R1"), sandbox).stdout == "releases/R1\n"
    assert sorted(os.listdir(layout.deploy_path)) == [".dep", "current", "releases", "shared"]


def test_switch_to_a_missing_release_fails_and_keeps_current(layout, sandbox):
    make_release(layout, "R1")
    assert sh(shell.switch(layout, "R1"), sandbox).returncode == 0
    res = sh(shell.switch(layout, "R9"), sandbox)
    assert res.returncode != 0
    assert os.readlink(layout.current) == "releases/R1"
    assert not os.path.lexists(layout.current_tmp)


# --- behaviour: setup -------------------------------------------------------------------------


def test_setup_is_idempotent(sandbox):
    lay = Layout(str(sandbox / "srv" / "it's $(touch pwned)"))
    for _ in range(2):
        res = sh(shell.setup(lay), sandbox)
        assert res.returncode == 0, res.stderr
    for d in (lay.releases, lay.shared, lay.dep):
        assert os.path.isdir(d)
    assert not os.path.lexists(lay.current)


def test_setup_accepts_current_symlink(layout, sandbox):
    make_release(layout, "R1")
    point_current(layout, "R1")
    res = sh(shell.setup(layout), sandbox)
    assert res.returncode == 0, res.stderr


def test_setup_refuses_current_real_directory(layout, sandbox):
    os.mkdir(layout.current)
    res = sh(shell.setup(layout), sandbox)
    assert res.returncode == shell.CURRENT_IS_DIR
    assert "is a real directory" in res.stderr
    assert layout.current in res.stderr


# --- behaviour: lock --------------------------------------------------------------------------


def test_lock_once_then_held(layout, sandbox):
    cfg = make_cfg(layout.deploy_path, user="o'brien $(touch pwned) `touch pwned`")
    record = owner_record(cfg)
    first = sh(shell.lock(layout, record), sandbox)
    assert first.returncode == 0, first.stderr
    assert Path(layout.lock_info).read_text() == record + "\n"
    second = sh(shell.lock(layout, owner_record(make_cfg(layout.deploy_path, user="bob"))), sandbox)
    assert second.returncode == shell.LOCK_HELD
    assert second.stdout == record + "\n"
    assert describe_owner(second.stdout) == (
        "o'brien $(touch pwned) `touch pwned` on laptop (pid 42) since 2026-11-22T10:15:00Z"
    )
    assert Path(layout.lock_info).read_text() == record + "\n"  # the holder's record is kept


def test_lock_without_dep_dir_fails_without_claiming_lock_held(sandbox):
    lay = Layout(str(sandbox / "srv" / "never set up"))
    res = sh(shell.lock(lay, "{}"), sandbox)
    assert res.returncode not in (0, shell.LOCK_HELD)
    assert "deploy.lock" in res.stderr


def test_unlock_own_wrong_token_keeps_lock_right_token_removes(layout, sandbox):
    cfg = make_cfg(layout.deploy_path, token="4f1c0ffee")
    assert sh(shell.lock(layout, owner_record(cfg)), sandbox).returncode == 0
    res = sh(shell.unlock_own(layout, "deadbeef"), sandbox)
    assert res.returncode == 0
    assert os.path.isdir(layout.lock)
    res = sh(shell.unlock_own(layout, "4f1c0ffee"), sandbox)
    assert res.returncode == 0, res.stderr
    assert not os.path.lexists(layout.lock)
    # Nothing to release is not an error either.
    assert sh(shell.unlock_own(layout, "4f1c0ffee"), sandbox).returncode == 0


def test_force_unlock_prints_owner_and_removes(layout, sandbox):
    record = owner_record(make_cfg(layout.deploy_path))
    assert sh(shell.lock(layout, record), sandbox).returncode == 0
    res = sh(shell.force_unlock(layout), sandbox)
    assert res.returncode == 0
    assert res.stdout == record + "\n"
    assert not os.path.lexists(layout.lock)
    again = sh(shell.force_unlock(layout), sandbox)
    assert again.returncode == 0 and again.stdout == ""


def test_describe_owner():
    record = owner_record(make_cfg("/srv/app"))
    assert json.loads(record)["token"] == "tok-0123456789abcdef"
    assert describe_owner(record) == "alice on laptop (pid 42) since 2026-11-22T10:15:00Z"
    assert describe_owner(None) == "an unknown deploy (no owner record yet)"
    assert describe_owner("") == "an unknown deploy (no owner record yet)"
    assert describe_owner("not json\nsecond") == "not json"
    assert describe_owner('{"user": "x"}') == '{"user": "x"}'
    assert describe_owner("x" * 500) == "x" * 200


# --- behaviour: releases log, create and remove -----------------------------------------------


def test_create_release_and_append_log(layout, sandbox):
    line = LogEntry("R1", "building", "2026-01-01T00:00:00Z", user="o'b $(touch pwned)").render()
    assert sh(shell.create_release(layout, "R1", line), sandbox).returncode == 0
    assert os.path.isdir(layout.release("R1"))
    again = sh(shell.create_release(layout, "R1", line), sandbox)
    assert again.returncode != 0  # an existing release is never reused
    done = LogEntry("R1", "complete", "2026-01-01T00:00:01Z").render()
    assert sh(shell.append_log(layout, done), sandbox).returncode == 0
    entries = parse_log(Path(layout.log).read_text())
    assert [(e.release, e.state) for e in entries] == [("R1", "building"), ("R1", "complete")]
    assert entries[0].user == "o'b $(touch pwned)"


def test_remove_release_refuses_live_and_removes_others(layout, sandbox):
    make_release(layout, "R1", {"f": "1"})
    make_release(layout, "R2", {"f": "2"})
    point_current(layout, "R2")
    res = sh(shell.remove_release(layout, "R2", "LOGGED"), sandbox)
    assert res.returncode == shell.REFUSED
    assert "refusing to remove the live release R2" in res.stderr
    assert os.path.isdir(layout.release("R2"))
    assert not os.path.exists(layout.log)  # nothing logged for a refusal
    res = sh(shell.remove_release(layout, "R1", "LOGGED"), sandbox)
    assert res.returncode == 0, res.stderr
    assert not os.path.lexists(layout.release("R1"))
    assert Path(layout.log).read_text().strip() == "LOGGED"
    # Removing what is already gone is fine (a re-run after a crash).
    assert sh(shell.remove_release(layout, "R1"), sandbox).returncode == 0


def test_remove_release_does_not_follow_links_out(layout, sandbox):
    outside = sandbox / "precious"
    outside.mkdir()
    (outside / "keep").write_text("k")
    rel = make_release(layout, "R1")
    os.symlink(outside, rel / "storage")
    assert sh(shell.remove_release(layout, "R1"), sandbox).returncode == 0
    assert (outside / "keep").read_text() == "k"


def test_remove_release_refuses_live_when_current_is_absolute(sandbox):
    lay = Layout(str(sandbox / "srv" / "absolute app"))
    assert sh(shell.setup(lay), sandbox).returncode == 0
    make_release(lay, "R1", {"index.php": "live"})
    os.symlink(lay.release("R1"), lay.current)  # e.g. a host migrated from Deployer
    # The rest of atomicdeploy does treat this link as pointing at R1:
    state = parse_state(sh(shell.read_state(lay), sandbox).stdout, shell.STATE_MARKERS)
    assert state.current == "R1"
    res = sh(shell.remove_release(lay, "R1"), sandbox)
    assert res.returncode == shell.REFUSED
    assert os.path.isdir(lay.release("R1"))


def test_remove_releases_removes_old_ones(layout, sandbox):
    for name in ("R1", "R2", "R3"):
        make_release(layout, name, {"f": name})
    point_current(layout, "R3")
    res = sh(shell.remove_releases(layout, ["R1", "R2"]), sandbox)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(layout.releases)) == ["R3"]


def test_remove_releases_refuses_live(layout, sandbox):
    for name in ("R1", "R2", "R3"):
        make_release(layout, name)
    point_current(layout, "R2")
    res = sh(shell.remove_releases(layout, ["R1", "R2"]), sandbox)
    assert res.returncode == shell.REFUSED
    assert "refusing to remove the live release R2" in res.stderr
    assert sorted(os.listdir(layout.releases)) == ["R2", "R3"]
    assert os.readlink(layout.current) == "releases/R2"


# --- behaviour: shared dirs and files ---------------------------------------------------------


def test_link_shared_dir_seeds_then_keeps_shared(layout, sandbox):
    make_release(layout, "R1", {"storage/logs/app.log": "first", "index.php": "1"})
    res = sh(shell.link_shared_dir(layout, "R1", "storage"), sandbox)
    assert res.returncode == 0, res.stderr
    link = Path(layout.release_item("R1", "storage"))
    assert link.is_symlink() and os.readlink(link) == "../../shared/storage"
    shared = Path(layout.shared_item("storage"))
    assert shared.is_dir() and not shared.is_symlink()
    assert (shared / "logs" / "app.log").read_text() == "first"
    assert (link / "logs" / "app.log").read_text() == "first"
    (shared / "upload.jpg").write_text("user data")

    make_release(layout, "R2", {"storage/logs/app.log": "second"})
    res = sh(shell.link_shared_dir(layout, "R2", "storage"), sandbox)
    assert res.returncode == 0, res.stderr
    link2 = Path(layout.release_item("R2", "storage"))
    assert os.readlink(link2) == "../../shared/storage"
    assert (link2 / "logs" / "app.log").read_text() == "first"  # shared content wins
    assert (link2 / "upload.jpg").read_text() == "user data"
    # Re-running the step (a retry) changes nothing.
    assert sh(shell.link_shared_dir(layout, "R2", "storage"), sandbox).returncode == 0
    assert (link2 / "upload.jpg").read_text() == "user data"


def test_link_shared_dir_nested_and_missing_from_release(layout, sandbox):
    make_release(layout, "R1")
    res = sh(shell.link_shared_dir(layout, "R1", "a/b"), sandbox)
    assert res.returncode == 0, res.stderr
    link = Path(layout.release_item("R1", "a/b"))
    assert os.readlink(link) == "../../../shared/a/b"
    assert Path(layout.shared_item("a/b")).is_dir()
    assert link.resolve() == Path(layout.shared_item("a/b")).resolve()
    assert list(Path(layout.shared_item("a/b")).iterdir()) == []


def test_link_shared_file_missing_everywhere(layout, sandbox):
    make_release(layout, "R1")
    res = sh(shell.link_shared_file(layout, "R1", "config/.env"), sandbox)
    assert res.returncode == shell.SHARED_MISSING
    assert "shared file config/.env is missing" in res.stderr
    assert layout.shared_item("config/.env") in res.stderr
    assert not os.path.lexists(layout.shared_item("config/.env"))
    assert not os.path.lexists(layout.release_item("R1", "config/.env"))


@pytest.mark.parametrize("secret", [True, False])
def test_link_shared_file_seeds_a_secret_0600_whatever_its_source_mode(layout, sandbox, secret):
    release = make_release(layout, "R1", {".env": "APP_KEY=k"})
    (release / ".env").chmod(0o644)  # as a developer's checkout has it
    res = sh(shell.link_shared_file(layout, "R1", ".env", secret=secret), sandbox)
    assert res.returncode == 0, res.stderr
    shared = Path(layout.shared_item(".env"))
    assert shared.read_text() == "APP_KEY=k"
    assert stat.S_IMODE(shared.stat().st_mode) == (0o600 if secret else 0o644)
    # An existing shared file keeps its mode: the operator's choice.
    shared.chmod(0o640)
    make_release(layout, "R2", {".env": "APP_KEY=other"})
    assert sh(shell.link_shared_file(layout, "R2", ".env", secret=True), sandbox).returncode == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640


def test_link_shared_file_seeds_then_keeps_shared(layout, sandbox):
    make_release(layout, "R1", {".env": "APP_KEY=first"})
    res = sh(shell.link_shared_file(layout, "R1", ".env"), sandbox)
    assert res.returncode == 0, res.stderr
    link = Path(layout.release_item("R1", ".env"))
    assert os.readlink(link) == "../../shared/.env"
    assert link.read_text() == "APP_KEY=first"
    make_release(layout, "R2", {".env": "APP_KEY=from the repo"})
    res = sh(shell.link_shared_file(layout, "R2", ".env"), sandbox)
    assert res.returncode == 0, res.stderr
    assert Path(layout.release_item("R2", ".env")).read_text() == "APP_KEY=first"
    # Nested: the link is one level deeper.
    make_release(layout, "R3", {"config/app.ini": "x=1"})
    res = sh(shell.link_shared_file(layout, "R3", "config/app.ini"), sandbox)
    assert res.returncode == 0, res.stderr
    assert os.readlink(layout.release_item("R3", "config/app.ini")) == (
        "../../../shared/config/app.ini"
    )


def test_shared_step_joins_scripts(layout, sandbox):
    """steps/shared.py runs `{ a; } && { b; }`: a missing file stops the whole chain."""
    make_release(layout, "R1", {"storage/x": "x"})
    scripts = [
        shell.link_shared_dir(layout, "R1", "storage"),
        shell.link_shared_file(layout, "R1", ".env"),
        shell.link_shared_dir(layout, "R1", "cache"),
    ]
    res = sh(" && ".join(f"{{ {s}; }}" for s in scripts), sandbox)
    assert res.returncode == shell.SHARED_MISSING
    assert os.path.islink(layout.release_item("R1", "storage"))
    assert not os.path.lexists(layout.shared_item("cache"))


# --- behaviour: writable ----------------------------------------------------------------------


@pytest.mark.parametrize("recursive", [True, False])
def test_make_writable_below_a_shared_dir_changes_shared_and_keeps_the_link(
    layout, sandbox, recursive
):
    make_release(layout, "R1", {"storage/logs/app.log": "x"})
    assert sh(shell.link_shared_dir(layout, "R1", "storage"), sandbox).returncode == 0
    shared = Path(layout.shared_item("storage"))
    for p in (shared, shared / "logs"):
        p.chmod(0o755)
    (shared / "logs" / "app.log").chmod(0o644)
    script = shell.make_writable(
        layout, "R1", ["storage"], "chmod", recursive=recursive, shared_dirs=["storage"]
    )
    res = sh(script, sandbox)
    assert res.returncode == 0, res.stderr
    assert shared.stat().st_mode & stat.S_IWGRP
    assert Path(layout.release_item("R1", "storage")).is_symlink()  # still the link
    nested = (shared / "logs").stat().st_mode & stat.S_IWGRP
    assert bool(nested) is recursive
    if recursive:
        assert (shared / "logs" / "app.log").stat().st_mode & 0o777 == 0o664  # X: no exec


def _victim(sandbox: Path) -> Path:
    """A directory outside the deploy path that a planted link points to."""
    victim = sandbox / "victim"
    victim.mkdir()
    (victim / "authorized_keys").write_text("key")
    (victim / "authorized_keys").chmod(0o600)
    victim.chmod(0o700)
    return victim


def _modes(root: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mode for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("mode", ["chmod", "acl", "chown"])
@pytest.mark.parametrize("planted", ["storage/logs", "storage/framework"])
def test_make_writable_refuses_a_link_planted_anywhere_on_the_way(layout, sandbox, mode, planted):
    """The web server can write below shared/storage: a leaf or a middle part replaced by a
    link to the deploy user's files fails the step naming it, and changes nothing there."""
    make_release(layout, "R1", {"storage/x": "x"})
    assert sh(shell.link_shared_dir(layout, "R1", "storage"), sandbox).returncode == 0
    victim = _victim(sandbox)
    before = _modes(victim)
    link = Path(layout.shared_item(planted))
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    script = shell.make_writable(
        layout,
        "R1",
        ["storage/logs", "storage/framework/cache"],
        mode,
        http_user="nobody" if mode == "chown" else me,
        shared_dirs=["storage"],
    )
    res = sh(script, sandbox)
    assert res.returncode == shell.REFUSED
    assert f"{link} is a symbolic link: refusing to follow it" in res.stderr
    assert _modes(victim) == before
    assert os.listdir(victim) == ["authorized_keys"]  # no `cache` made in there
    acl = subprocess.run(
        ["getfacl", "-p", "--skip-base", str(victim)], capture_output=True, text=True, check=True
    ).stdout
    assert acl == ""
    assert victim.stat().st_uid == os.getuid()


def test_make_writable_never_changes_a_link_swapped_in_during_the_walk(layout, sandbox):
    # Without the walk and the `pwd -P` check, 300 runs of this made the victim 0777.
    """A link that replaces a directory between the `-L` test and the `cd` is caught by the
    physical-path check: run the step while another process flips the part back and forth."""
    make_release(layout, "R1")
    assert sh(shell.link_shared_dir(layout, "R1", "storage"), sandbox).returncode == 0
    victim = _victim(sandbox)
    before = _modes(victim)
    shared = Path(layout.shared_item("storage"))
    (shared / "logs").mkdir()
    TRIES = 60
    stop = sandbox / "stop-flipping"
    flipper = subprocess.Popen(
        [
            "sh",
            "-c",
            'while [ ! -e "$2" ]; do mv -T logs away; ln -s "$1" logs; rm -f logs;'
            " mv -T away logs; done",
            "flip",
            str(victim),
            str(stop),
        ],
        cwd=shared,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # if it must be killed, its `mv` goes with it
    )
    outcomes: dict[str, int] = {}
    try:
        script = shell.make_writable(
            layout, "R1", ["storage/logs"], "chmod", chmod_mode="0777", shared_dirs=["storage"]
        )
        for _ in range(TRIES):
            res = sh(script, sandbox)
            key = (
                "ok"
                if res.returncode == 0
                else "link named"
                if "symbolic link" in res.stderr
                else "moved"
                if "not where it should be" in res.stderr
                else "other"
            )
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        # Asked to stop, it ends after a whole turn, its last `mv` done. Killed, the shell
        # once left that `mv` renaming `away` while the sandbox was searched for planted
        # files (a FileNotFoundError there).
        stop.touch()
        try:
            flipper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(flipper.pid, signal.SIGKILL)
            flipper.wait()
    assert _modes(victim) == before, outcomes
    faults.record(
        "path safety",
        "writable dir whose part is flipped dir/link during the step",
        tries=TRIES,
        outcome="the linked dir never changed: each run changed the real"
        " dir, or failed (naming the link when it saw one)",
    )


def test_make_writable_creates_missing_dirs(layout, sandbox):
    make_release(layout, "R1")
    res = sh(shell.make_writable(layout, "R1", ["bootstrap/cache"], "chmod"), sandbox)
    assert res.returncode == 0, res.stderr
    assert Path(layout.release_item("R1", "bootstrap/cache")).is_dir()


def test_make_writable_acl(sandbox):
    lay = Layout(str(sandbox / "srv" / "it's $(touch pwned)"))
    assert sh(shell.setup(lay), sandbox).returncode == 0
    make_release(lay, "R1", {"storage/x": "x"})
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    res = sh(shell.make_writable(lay, "R1", ["storage"], "acl", http_user=me), sandbox)
    assert res.returncode == 0, res.stderr
    acl = subprocess.run(
        ["getfacl", "-p", lay.release_item("R1", "storage")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"user:{me}:rwx" in acl
    assert f"default:user:{me}:rwx" in acl


# --- behaviour: read_state --------------------------------------------------------------------


def test_read_state_round_trip(layout, sandbox):
    for name in ("R1", "R2", "R3"):
        make_release(layout, name)
    os.symlink(sandbox, Path(layout.releases) / "R9-planted")  # a link is never a release
    Path(layout.releases, "notes.txt").write_text("a file is not a release either")
    lines = [
        LogEntry("R1", "building", "t1", user="alice"),
        LogEntry("R1", "complete", "t2"),
        LogEntry("R1", "live", "t3"),
        LogEntry("R2", "building", "t4", revision="abc123"),
        LogEntry("R2", "complete", "t5"),
        LogEntry("R2", "live", "t6"),
        LogEntry("R3", "building", "t7"),
        LogEntry("R3", "failed", "t8"),
    ]
    for entry in lines:
        assert sh(shell.append_log(layout, entry.render()), sandbox).returncode == 0
    with open(layout.log, "a") as fh:
        fh.write('{"release": "R3", "sta\n')  # garbage line (torn, newline-terminated)
    record = owner_record(make_cfg(layout.deploy_path))
    assert sh(shell.lock(layout, record), sandbox).returncode == 0
    point_current(layout, "R2")

    res = sh(shell.read_state(layout), sandbox, via="remote-sh")
    assert res.returncode == 0, res.stderr
    state = parse_state(res.stdout, shell.STATE_MARKERS)
    assert state.current == "R2"
    assert [(r.name, r.state, r.live) for r in state.releases] == [
        ("R1", "complete", False),
        ("R2", "live", True),
        ("R3", "failed", False),
    ]
    assert state.get("R2").revision == "abc123"
    assert state.get("R1").user == "alice" and state.get("R1").created == "t1"
    assert state.get("R9-planted") is None
    assert state.lock_owner == record
    assert len(state.entries) == len(lines)


def _torn_log(sandbox: Path) -> Layout:
    """A releases log whose last append was cut short by a crash: no trailing newline."""
    lay = Layout(str(sandbox / "srv" / "it's $(touch pwned)"))
    assert sh(shell.setup(lay), sandbox).returncode == 0
    make_release(lay, "R1")
    good = LogEntry("R1", "complete", "t1").render()
    Path(lay.log).write_text(good + "\n" + '{"release": "R1", "state": "rol')
    return lay


def test_read_state_after_a_torn_log_line_still_reports_the_lock(sandbox):
    lay = _torn_log(sandbox)
    record = owner_record(make_cfg(lay.deploy_path))
    assert sh(shell.lock(lay, record), sandbox).returncode == 0
    res = sh(shell.read_state(lay), sandbox)
    state = parse_state(res.stdout, shell.STATE_MARKERS)
    assert state.lock_owner == record


def test_append_log_after_a_torn_line_keeps_the_new_entry(sandbox):
    lay = _torn_log(sandbox)
    entry = LogEntry("R1", "rolled back", "t2")
    assert sh(shell.append_log(lay, entry.render()), sandbox).returncode == 0
    assert parse_log(Path(lay.log).read_text())[-1] == entry


def test_read_state_of_an_empty_host(sandbox):
    lay = Layout(str(sandbox / "srv" / "nothing here yet $(touch pwned)"))
    res = sh(shell.read_state(lay), sandbox)
    assert res.returncode == 0, res.stderr
    state = parse_state(res.stdout, shell.STATE_MARKERS)
    assert state.current is None
    assert state.releases == ()
    assert state.lock_owner is None


def test_read_state_asks_rsync_its_version_only_for_a_deploy(sandbox):
    """A rollback, status or unlock runs no `rsync --version` on the host."""
    lay = Layout(str(sandbox / "srv" / "app"))
    assert sh(shell.setup(lay), sandbox).returncode == 0
    local = subprocess.run(["rsync", "--version"], capture_output=True, text=True, check=True)
    asked = parse_state(
        sh(shell.read_state(lay, rsync_version=True), sandbox).stdout, shell.STATE_MARKERS
    )
    assert asked.rsync == local.stdout.split("\n", 1)[0]
    plain = shell.read_state(lay)
    assert "rsync --version" not in plain
    state = parse_state(sh(plain, sandbox).stdout, shell.STATE_MARKERS)
    assert state.rsync == ""
    assert replace(state, rsync=asked.rsync) == asked


def test_sync_release_flushes_the_filesystem_and_falls_back_to_plain_sync(sandbox):
    release = sandbox / "srv" / "app $(touch pwned)" / "releases" / "R1"
    release.mkdir(parents=True)
    assert sh(shell.sync_release(str(release)), sandbox).returncode == 0
    assert not (sandbox / "pwned").exists()
    shim = sandbox / "bin"
    shim.mkdir()
    env = {
        **os.environ,
        "PATH": f"{shim}:{os.environ['PATH']}",
        "LOG": str(sandbox / "log"),
        "ANSWER": str(sandbox / "answer"),
    }

    def with_sync(answer_to_f: str) -> subprocess.CompletedProcess:
        """Run the part with a `sync` that logs its arguments and fails -f with `answer_to_f`."""
        (sandbox / "answer").write_text(answer_to_f + "\n")
        (shim / "sync").write_text(
            '#!/bin/sh\necho "sync $*" >> "$LOG"\n'
            'if [ "$1" = -f ]; then cat "$ANSWER" >&2; exit 1; fi\n'
        )
        (shim / "sync").chmod(0o755)
        (sandbox / "log").write_text("")
        return subprocess.run(
            ["sh", "-c", shell.sync_release(str(release))],
            env=env,
            cwd=sandbox,
            capture_output=True,
            text=True,
            check=False,
        )

    # A `sync` that knows no -f (coreutils < 8.24, old busybox): plain sync instead.
    res = with_sync("sync: invalid option -- 'f'")
    assert res.returncode == 0 and res.stderr == ""
    assert (sandbox / "log").read_text() == f"sync -f -- {release}\nsync \n"
    # A flush that really fails fails the part: the release is not logged complete.
    res = with_sync(f"sync: error syncing '{release}': Input/output error")
    assert res.returncode != 0
    assert res.stderr == f"sync: error syncing '{release}': Input/output error\n"
    assert (sandbox / "log").read_text() == f"sync -f -- {release}\n"


def test_remote_closes_stdin(sandbox):
    fed = shell.script_payload("cat; echo done") + b"would block a remote command forever\n"
    proc = subprocess.run(
        ["sh", "-c", shell.remote()],
        cwd=sandbox,
        input=fed,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout == b"done\n"


# --- properties -------------------------------------------------------------------------------

NASTY_CHARS = " '\"$()`\\;&|<>*?[]{}~#!-=.\t\r\n\0/%^,:@+üé☃日本\u2028\x85"
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY_CHARS), st.characters(blacklist_categories=("Cs",))),
    min_size=0,
    max_size=24,
)
names = st.one_of(
    st.sampled_from(
        [
            "$(touch pwned)",
            "`touch pwned`",
            "it's",
            'a"b',
            "-rf",
            "--",
            "..",
            ".",
            "...",
            " ",
            "a b",
            "ü",
            "R1\n",
            "a/b",
            "",
            "\0",
            "-",
            "$HOME",
            "*",
        ]
    ),
    nasty_text,
)
items = st.one_of(
    st.sampled_from(
        [
            "storage",
            "a/b",
            "a//b/",
            "./a",
            "../x",
            "a/../b",
            "/abs",
            "-rf",
            "it's/$(touch pwned)",
            "`touch pwned`/x",
            " / ",
            "ü/☃",
            ".",
        ]
    ),
    nasty_text,
    st.lists(nasty_text, min_size=1, max_size=3).map("/".join),
)
deploy_dirs = nasty_text.filter(
    lambda s: s not in ("", ".", "..") and "/" not in s and "\0" not in s
)

PROPERTY = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@PROPERTY
@given(deploy_dir=deploy_dirs, name=names)
def test_switch_property(deploy_dir, name):
    try:
        check_release_name(name)
    except ConfigError as exc:
        event("release name refused")
        assert (
            not name
            or name in (".", "..")
            or name.startswith("-")
            or any(c in name for c in "/\0\n")
        ), exc
        with pytest.raises(ConfigError):
            shell.switch(APP, name)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lay = Layout(str(root / "srv" / deploy_dir))
        Path(lay.releases).mkdir(parents=True)
        Path(lay.release(name)).mkdir()
        before = _tree(root)
        res = subprocess.run(
            ["sh", "-c", shell.remote()],
            cwd=root,
            capture_output=True,
            input=shell.script_payload(shell.switch(lay, name)),
            timeout=30,
            env=_env(root),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"releases/{name}\n".encode()
        assert os.readlink(lay.current) == f"releases/{name}"
        assert os.path.samefile(lay.current, lay.release(name))
        current = str(Path(lay.current).relative_to(root))
        assert _tree(root) == before | {current}  # no stray file, no .current.tmp, no pwned


@PROPERTY
@given(deploy_dir=deploy_dirs, item=items)
def test_link_shared_dir_property(deploy_dir, item):
    try:
        clean = check_relative_path(item, "shared path")
    except ConfigError:
        event("shared path refused")
        parts = item.strip("/").split("/")
        assert (
            not item.strip("/")
            or item.startswith("/")
            or "\0" in item
            or "\n" in item
            or ".." in parts
            or not [p for p in parts if p not in ("", ".")]
            or any(p.startswith("-") for p in parts)
        )
        with pytest.raises(ConfigError):
            shell.link_shared_dir(APP, "R1", item)
        return
    assert clean and not clean.startswith("/") and ".." not in clean.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lay = Layout(str(root / "srv" / deploy_dir))
        res = subprocess.run(
            ["sh", "-c", shell.setup(lay)],
            cwd=root,
            capture_output=True,
            timeout=30,
            env=_env(root),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        rel = Path(lay.release("R1"))
        (rel / clean).mkdir(parents=True)
        (rel / clean / "seed").write_text("seed")
        res = subprocess.run(
            ["sh", "-c", shell.link_shared_dir(lay, "R1", item)],
            cwd=root,
            capture_output=True,
            timeout=30,
            env=_env(root),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        link = rel / clean
        depth = clean.count("/") + 2
        assert os.readlink(link) == "../" * depth + "shared/" + clean
        assert (link / "seed").read_text() == "seed"
        assert (Path(lay.shared) / clean / "seed").read_text() == "seed"
        assert pwned_files(root) == []


def test_rsync_argv_hardlinks_use_link_dest_instead_of_copy_dest():
    argv = shell.rsync_argv(
        "/src",
        "h",
        "/srv/app/releases/R2",
        ssh=["ssh"],
        copy_dest="/srv/app/releases/R1",
        hardlinks=True,
    )
    assert argv[argv.index("--link-dest") + 1] == "/srv/app/releases/R1"
    assert "--copy-dest" not in argv


def test_an_armed_go_live_waits_for_go_on_stdin_just_before_the_rename(tmp_path):
    layout = Layout(str(tmp_path / "app it's"))
    Path(layout.release("R1")).mkdir(parents=True)
    script = shell.go_live(layout, "R1", armed=True)
    assert script.index(shell.ARMED_MARKER) < script.index("mv -fT")
    wrapped = shell.remote(stdin=True)
    assert not wrapped.endswith("</dev/null")
    fed = shell.script_payload(script).decode()
    nogo = subprocess.run(
        ["sh", "-c", wrapped], input=fed + "stop\n", capture_output=True, text=True
    )
    assert nogo.returncode == 91 and not os.path.lexists(layout.current)
    go = subprocess.run(["sh", "-c", wrapped], input=fed + "go\n", capture_output=True, text=True)
    assert go.returncode == 0, go.stderr
    assert go.stdout.splitlines()[0] == shell.ARMED_MARKER
    assert os.readlink(layout.current) == "releases/R1"


def test_go_live_says_when_nginx_and_the_opcache_reset_start(tmp_path):
    """A go-live that hangs in the nginx reload or the opcache reset names that part."""
    layout = Layout(str(tmp_path / "app"))
    assert sh(shell.setup(layout), tmp_path).returncode == 0
    Path(layout.release("R1"), "public").mkdir(parents=True)
    root_file = str(tmp_path / "root.conf")
    script = shell.go_live(
        layout,
        "R1",
        log_lines=["x"],
        nginx=(root_file, "set $root_dir x;\n", "true", "true"),
        opcache="echo reset",
    )
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    started = [ln.removeprefix(shell.START_MARKER) for ln in res.stderr.splitlines()]
    assert started == ["switch", "nginx", "log", "opcache"]
    assert remote.split_step_marker(res.stderr) == (None, "")


def test_rsync_ends_a_stalled_transfer_with_its_own_timeout():
    argv = shell.rsync_argv("/src", "h", "/srv/app/releases/R", ssh=["ssh"], timeout=30)
    assert "--timeout=30" in argv
    assert argv.index("--timeout=30") < argv.index("--")


def _read_from(lines: list[str], name: str) -> set[str]:
    """The lines the state of `name` is read from: its first, its newest with a
    revision, its newest (releases.fold)."""
    mine = [ln for ln in lines if parse_log(ln) and parse_log(ln)[0].release == name]
    revised = [ln for ln in mine if parse_log(ln)[0].revision]
    return {mine[0], mine[-1], *revised[-1:]} if mine else set()


def test_compact_log_keeps_the_lines_each_kept_release_is_read_from_in_order(layout, sandbox):
    assert sh(shell.setup(layout), sandbox).returncode == 0
    states = ["building", "complete", "live", "rolled_back"]
    lines = [
        LogEntry(
            f"R{i % 7}", states[i % 4], f"t{i}", revision=f"c{i}" if i % 5 == 0 else ""
        ).render()
        for i in range(60)
    ]
    lines.insert(3, '{"release": "R1", "sta')  # torn by a crash
    lines.append('{"release": "R5", "state": "live", "ti')  # torn, and the newest of R5
    lines.append(LogEntry('it\'s "q" ü', "live", "t", note='"release": "R2"}').render())
    Path(layout.log).write_text("\n" + "\n\n".join(lines) + "\n")
    keep = ["R1", "R5", "R6", 'it\'s "q" ü']
    res = sh(shell.compact_log(layout, keep), sandbox)
    assert res.returncode == 0, res.stderr
    kept = Path(layout.log).read_text().splitlines()
    wanted = set().union(*(_read_from(lines, name) for name in keep))
    assert kept == [ln for ln in lines if ln in wanted]
    assert len(kept) <= 3 * len(keep)
    before = fold(keep, parse_log("\n".join(lines)), "R5")
    assert fold(keep, parse_log("\n".join(kept)), "R5") == before
    assert not Path(layout.log + ".tmp").exists()


def test_read_state_reads_only_the_tail_of_a_long_log():
    script = shell.read_state(APP)
    assert f"tail -n {shell.LOG_TAIL} -- /srv/app/.dep/releases.log" in script
    assert "cat -- /srv/app/.dep/releases.log" not in script


def test_one_swap_builder_serves_switch_go_live_and_the_switch_back():
    link, rename = shell.swap(HOSTILE, q(HOSTILE.current_target("R1")))
    assert shell.switch(HOSTILE, "R1").split(" && ")[1:3] == [link, rename]
    live = shell.go_live(HOSTILE, "R1", nginx=("/etc/x.conf", "set $a b;", "true", "true"))
    assert link in live and rename in live
    back_link, back_rename = shell.swap(HOSTILE, '"$prev"')
    assert back_rename == rename
    assert f"{back_link} && {back_rename}" in shell.switch_back(HOSTILE)
    assert shell.switch_back(HOSTILE) in live  # nginx refused: current goes back


@pytest.mark.parametrize("login_shell", ["sh", "bash"])
def test_then_next_runs_the_half_sent_back_in_the_same_shell_after_the_first(tmp_path, login_shell):
    """The first half gets no stdin (what follows is the second half); a first half that
    fails ends the script before the second half is read or run."""
    second = shell.script_payload('echo "two $ad_mark"')

    def run(first: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [login_shell, "-c", shell.remote(stdin=True)],
            input=(shell.script_payload(shell.then_next(first)) + second).decode(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=30,
            check=False,
        )

    res = run("ad_mark=same-shell; cat; echo one")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"one\n{shell.NEXT_MARKER}\ntwo same-shell\n"
    res = run("echo one; exit 3")
    assert (res.returncode, res.stdout) == (3, "one\n")


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=6), st.booleans())
def test_the_next_half_is_sent_once_whatever_the_chunks(cuts, first_line):
    """The marker may arrive split across chunks, or as the script's first line."""
    head = "" if first_line else "state line 1\nstate @@ad:next not alone\n"
    printed = f"{head}{shell.NEXT_MARKER}\n{shell.ARMED_MARKER}\n"
    asked, sent = [], []
    asking = Asking(lambda text: asked.append(text) or b"next", sent.append)
    bounds = sorted({0, len(printed), *(c for c in cuts if c < len(printed))})
    chunks = [printed[a:b] for a, b in itertools.pairwise(bounds)]
    # The runner stops asking once it was sent: the rest of stdout is the second half's.
    told = next(i for i, chunk in enumerate(chunks) if asking.sent(chunk))
    assert asked == [head] and sent == [b"next"]
    assert shell.NEXT_MARKER in "".join(chunks[: told + 1])


def test_a_reply_that_fails_still_answers_with_a_script_that_fails():
    def broken(printed: str) -> str:
        raise ValueError(printed)

    payload = remote._framed(broken)("state\n")
    res = subprocess.run(
        ["sh", "-c", shell.remote()], input=payload, capture_output=True, timeout=30, check=False
    )
    assert res.returncode == 70 and b"no second half" in res.stderr


def test_the_go_signal_is_written_once_to_every_armed_script_by_the_firing_thread():
    fire, heard = Fire(), []
    fire.attach(heard.append)

    def gone(data: bytes) -> None:
        raise OSError("channel closed")  # a host whose script already ended

    fire.attach(gone)
    assert heard == [] and not fire.is_set()
    fire.set()
    fire.set()
    assert heard == [b"go\n"] and not fire.told_no
    fire.attach(heard.append)  # armed after the go: told at once
    assert heard == [b"go\n", b"go\n"]
    no, told = Fire(), []
    no.attach(told.append)
    no.abort.set()
    assert not no.told_no  # not yet fired
    no.set()
    assert told == [b"no\n"] and no.told_no
