"""Bad input for every builder in shell.py (issue "Reliability and security: bad input").

Each path, name, pattern, token, URL or text is either refused with a clear one-line
ConfigError/ValueError (by the builder or the validator that guards it: layout's
`check_release_name`/`check_relative_path`, the inventory's key checks), or the script
does exactly what it should when `sh` runs it under `tmp_path` and never runs an
injected `touch pwned`. Each example is counted in the fault report.

Covered elsewhere and not repeated here: `switch` (test_shell.test_switch_property
generates hostile deploy dirs and release names the same way). `switch_link` and
`switch_rename` are exercised here through `go_live`.

Free text never holds NUL: neither an argv nor an SSH exec request can carry one.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atomicdeploy import remote, shell, tunnel
from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory import KEYS
from atomicdeploy.layout import Layout, check_relative_path, check_release_name
from atomicdeploy.releases import LogEntry, parse_state
from tests import faults
from tests.local_transport import LocalTransport

q = shlex.quote
OUTCOME = "refused or quoted; no injection"
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
SLOW = settings(BOUNDED, max_examples=25)

# --- hostile input ----------------------------------------------------------------------------

# Ways to run `touch pwned` (cwd is the sandbox) if a value ever reaches the shell unquoted.
PAYLOADS = (
    "$(touch pwned)",
    "`touch pwned`",
    ";touch pwned;",
    "&& touch pwned",
    "|touch pwned",
    "\ntouch pwned\n",
    "'; touch pwned; '",
    '"; touch pwned; "',
    "$(touch${IFS}pwned)",
    "'$(touch pwned)'",
    "\\'; touch pwned #",
)
BITS = (
    *PAYLOADS,
    " ",
    "  ",
    "'",
    '"',
    "\\",
    "\n",
    "\t",
    "\r",
    "-",
    "--",
    "-rf",
    "--help",
    "*",
    "?",
    "[",
    "]",
    "[a-z]",
    "{a,b}",
    "~",
    "$HOME",
    "${IFS}",
    "$",
    "#",
    "!",
    "%",
    "%d",
    "%%",
    "=",
    ",",
    ":",
    "@",
    "+",
    ";",
    "|",
    "&",
    "<",
    ">",
    "(",
    ")",
    "ü",
    "☃",
    "日本",
    "\u2028",
    "\x85",
    "\x7f",
    "\x1b[31m",
    ".",
    "..",
)
_any_char = st.characters(blacklist_categories=("Cs",))
_text_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
_comp_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/")


def _hostile(
    bits: tuple[str, ...], chars: st.SearchStrategy[str], *, min_parts: int = 0, max_parts: int = 4
) -> st.SearchStrategy[str]:
    part = st.one_of(st.sampled_from(bits), st.text(chars, min_size=1, max_size=3))
    return st.lists(part, min_size=min_parts, max_size=max_parts).map("".join)


def _fits(path: str) -> bool:
    """Each component fits a file name (255 bytes), with room for suffixes like `.prev`."""
    return all(len(p.encode()) <= 180 for p in path.split("/"))


# Free text: log lines, owner records, file contents, env values, URLs.
texts = _hostile(BITS, _text_char)
# One directory component (a deploy dir, a file name): no `/` or NUL, never `.` or `..`.
components = _hostile(
    tuple(b for b in BITS if b not in (".", "..")), _comp_char, min_parts=1
).filter(lambda s: s not in (".", "..") and _fits(s))
NAME_EDGES = (
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
    "?",
    "[a]",
    "\\",
    "~",
    "!",
    "#x",
    "R1;touch pwned",
    "x|touch pwned",
    "&&touch pwned",
    "R1\r",
    "\x85",
)
names = st.one_of(
    st.sampled_from(NAME_EDGES),
    _hostile((*BITS, "/", "\0"), _any_char).filter(_fits),
)
ITEM_EDGES = (
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
    "*",
    "a/*",
    "[x]/?",
    "-/--",
    "a\nb",
    "\\/x",
    "a/./b/",
)
items = st.one_of(
    st.sampled_from(ITEM_EDGES),
    st.lists(names, min_size=1, max_size=3).map("/".join).filter(_fits),
)
# Characters `str.splitlines` (releases.parse_state) treats as line ends.
LINE_ENDS = set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


# --- sandbox and recording --------------------------------------------------------------------


def recorded(builder: str, what: str = "hostile path/name"):
    """One try of `builder` in the fault report."""
    return faults.trying("bad input", f"{builder}: {what}", OUTCOME)


def new_root(tmp_path: Path) -> Path:
    """A fresh sandbox per example (hypothesis reuses the function's tmp_path)."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


def run(
    script: str,
    root: Path,
    *,
    login: str = "sh",
    path: Path | None = None,
    input: str | bytes | None = None,
) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(root)}
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    return exact(
        subprocess.run(
            [login, "-c", script],
            cwd=root,
            capture_output=True,
            env=env,
            input=input.encode() if isinstance(input, str) else input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    )


def exact(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Decode output byte for byte: `text=True` would turn a `\r` into a newline."""
    res.stdout = res.stdout.decode("utf-8", "surrogateescape")
    res.stderr = res.stderr.decode("utf-8", "surrogateescape")
    return res


def tree(root: Path) -> set[str]:
    """Every path under root (links listed, not followed)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def assert_not_pwned(root: Path) -> None:
    pwned = [p for p in tree(root) if os.path.basename(p) == "pwned"]
    assert pwned == [], f"injected code ran: {pwned}"


def assert_clear(message: str) -> None:
    assert message.strip() and len(message.splitlines()) == 1, repr(message)


def refusal(check, *args) -> str | None:
    """The one-line message if `check(*args)` refuses its input, else None."""
    try:
        check(*args)
    except (ConfigError, ValueError) as exc:
        assert_clear(str(exc))
        return str(exc)
    return None


def echo_safe(*values: str) -> bool:
    """dash's `echo` rewrites backslash escapes; messages are compared only without them
    (see test_messages_keep_backslashes_under_dash)."""
    return not any("\\" in v for v in values)


def deploy_layout(root: Path, comp: str) -> Layout | None:
    """A layout under root/srv/<comp>, or None if the inventory refuses that deploy_path."""
    raw = str(root / "srv" / comp)
    if refusal(KEYS["deploy_path"].check, raw) is not None:
        event("deploy_path refused by the inventory")
        return None
    return Layout(KEYS["deploy_path"].check(raw))


def setup_layout(root: Path, comp: str) -> Layout | None:
    lay = deploy_layout(root, comp)
    if lay is not None:
        res = run(shell.setup(lay), root)
        assert res.returncode == 0, res.stderr
    return lay


def name_refused(name: str, builder, *args) -> bool:
    """True (after checking the builder refuses too) if `check_release_name` refuses `name`."""
    msg = refusal(check_release_name, name)
    if msg is None:
        return False
    event("release name refused")
    assert repr(name) in msg
    with pytest.raises(ConfigError):
        builder(*args)
    return True


FAKE_TOOL = """#!{python}
# Stand-in for cgi-fcgi, cachetool and curl: log argv and environment, answer from files.
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
tool = os.path.basename(sys.argv[0])
config = sys.stdin.read() if sys.argv[-2:] == ["-K", "-"] else None
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"tool": tool, "argv": sys.argv[1:], "env": dict(os.environ),
                        "config": config}}) + "\\n")
def read(name, default=""):
    try:
        with open(os.path.join(here, name)) as f:
            return f.read()
    except OSError:
        return default
mode = read("mode", "ok")
if tool == "cgi-fcgi":
    if mode == "down":
        sys.exit(1)
    script = os.environ.get("SCRIPT_FILENAME", "")
    if script.endswith(".php") and "opcache-reset" in script:
        ok = mode == "ok" and "opcache_reset()" in open(script).read()
        sys.stdout.write("Content-type: text/html\\r\\n\\r\\n")
        sys.stdout.write("{ok_marker}" if ok else "opcache_reset() failed or opcache is off")
    else:
        sys.stdout.write(read("fcgi-head") + "Content-type: text/html\\r\\n\\r\\nbody")
elif tool == "curl":
    if "-w" in sys.argv:
        code = read("code", "200")
        sys.stdout.write(f"HTTP/1.1 {{code}} X\\r\\nContent-Type: text/plain\\r\\n\\r\\n")
        sys.stdout.write(read("body") + "\\n" + code)
    elif mode != "ok":
        sys.stderr.write("curl: (22) The requested URL returned error: 500\\n")
        sys.exit(22)
elif mode != "ok":
    sys.stderr.write("cachetool: cannot connect\\n")
    sys.exit(1)
"""


def fake_tools(root: Path) -> Path:
    """root/bin with cgi-fcgi, cachetool and curl stand-ins; their calls go to calls.jsonl."""
    bindir = root / "bin"
    bindir.mkdir()
    script = FAKE_TOOL.format(python=sys.executable, ok_marker=shell.OPCACHE_OK)
    for tool in ("cgi-fcgi", "cachetool", "curl"):
        (bindir / tool).write_text(script)
        (bindir / tool).chmod(0o755)
    return bindir


def calls(bindir: Path) -> list[dict]:
    log = bindir / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# --- layout builders: setup, read_state/read_status, lock, unlock, force_unlock ---------------


@BOUNDED
@given(comp=components)
def test_setup_makes_exactly_its_three_dirs_and_names_a_real_current(tmp_path, comp):
    root = new_root(tmp_path)
    with recorded("setup"):
        lay = deploy_layout(root, comp)
        if lay is None:
            return
        res = run(shell.setup(lay), root)
        assert res.returncode == 0, res.stderr
        base = os.path.relpath(lay.deploy_path, root)
        assert tree(root) == {"srv", base, f"{base}/releases", f"{base}/shared", f"{base}/.dep"}
        os.mkdir(lay.current)
        res = run(shell.setup(lay), root)
        assert res.returncode == shell.CURRENT_IS_DIR
        if echo_safe(lay.current):
            assert res.stderr == (
                f"{lay.current} is a real directory: move it away so that it"
                " can be an atomic symlink\n"
            )
        assert_not_pwned(root)


@BOUNDED
@given(
    comp=components,
    release_names=st.lists(names, max_size=3, unique=True),
    user=texts,
    content=texts,
    live=st.booleans(),
)
def test_read_state_and_status_report_exactly_what_is_on_disk(
    tmp_path, comp, release_names, user, content, live
):
    root = new_root(tmp_path)
    with recorded("read_state/read_status"):
        lay = setup_layout(root, comp)
        if lay is None:
            return
        valid = [n for n in release_names if refusal(check_release_name, n) is None]
        # Generated names never hold line ends; parse_state reads lines with str.splitlines.
        valid = [n for n in valid if not LINE_ENDS & set(n)]
        for n in valid:
            os.mkdir(lay.release(n))
            line = LogEntry(n, "complete", "t1", user=user).render()
            assert run(shell.append_log(lay, line), root).returncode == 0
        owner = json.dumps({"user": user, "token": "abc123"}, sort_keys=True)
        assert run(shell.lock(lay, owner), root).returncode == 0
        if live and valid:
            os.symlink(lay.current_target(valid[0]), lay.current)
        root_file = str(root / "etc" / comp / "root.conf")
        os.makedirs(os.path.dirname(root_file))
        Path(root_file).write_text(content, encoding="utf-8")
        res = run(shell.read_status(lay, root_file), root)
        assert res.returncode == 0, res.stderr
        text, _, include = res.stdout.partition(shell.NGINX_MARKER + "\n")
        assert include == content
        state = parse_state(text, shell.STATE_MARKERS)
        assert state.current == (valid[0] if live and valid else None)
        assert sorted(r.name for r in state.releases) == sorted(valid)
        assert all(r.user == user for r in state.releases)
        assert state.lock_owner == owner
        assert_not_pwned(root)


@BOUNDED
@given(comp=components, owner=texts, other=texts)
def test_lock_keeps_the_owner_record_verbatim_and_force_unlock_prints_it(
    tmp_path, comp, owner, other
):
    root = new_root(tmp_path)
    with recorded("lock/force_unlock", "hostile path/owner record"):
        lay = setup_layout(root, comp)
        if lay is None:
            return
        before = tree(root)
        res = run(shell.lock(lay, owner), root)
        assert res.returncode == 0, res.stderr
        assert Path(lay.lock_info).read_bytes().decode() == owner + "\n"
        res = run(shell.lock(lay, other), root)
        assert res.returncode == shell.LOCK_HELD
        assert res.stdout == owner + "\n"
        res = run(shell.force_unlock(lay), root)
        assert res.returncode == 0, res.stderr
        assert res.stdout == owner + "\n"
        assert tree(root) == before  # the lock is gone, nothing else is
        assert_not_pwned(root)


TOKEN_EDGES = ("", "abc123", "ABC", "a b", "a-b", "a\nb", "$(x)", "0", "\0", "ü", "٣", "²")
tokens = st.one_of(
    st.sampled_from(TOKEN_EDGES),
    _hostile(BITS, _any_char),
    st.text(alphabet="abcdef0123456789", min_size=1),
)


@BOUNDED
@given(comp=components, token=tokens)
def test_unlock_releases_only_a_lock_with_our_token(tmp_path, comp, token):
    root = new_root(tmp_path)
    with recorded("unlock_own/then_unlock", "hostile path/token"):
        lay = deploy_layout(root, comp)
        if lay is None:
            return
        if not token or not token.isalnum():
            event("token refused")
            for build in (
                lambda: shell.unlock_own(lay, token),
                lambda: shell.then_unlock("true", lay, token),
            ):
                with pytest.raises(ValueError, match="lock token") as exc:
                    build()
                assert_clear(str(exc.value))
            return
        if not token.isascii():
            event("non-ASCII alnum token: see test_unlock_own_with_a_non_ascii_token")
            return
        assert run(shell.setup(lay), root).returncode == 0
        owner = json.dumps({"token": token, "user": "alice $(touch pwned)"}, sort_keys=True)
        assert run(shell.lock(lay, owner), root).returncode == 0
        # `(exit N)`: a script that fails without ending the shell (see
        # test_then_unlock_unlocks_after_a_script_that_exits for one that ends it).
        res = run(shell.then_unlock("(exit 7)", lay, token + "x"), root)
        assert res.returncode == 7 and os.path.isdir(lay.lock)  # someone else's: kept
        res = run(shell.unlock_own(lay, "x" + token), root)
        assert res.returncode == 0 and os.path.isdir(lay.lock)
        res = run(shell.then_unlock("echo done; (exit 3)", lay, token), root)
        assert res.returncode == 3 and res.stdout == "done\n"
        assert not os.path.lexists(lay.lock)
        assert os.path.isdir(lay.dep)
        assert_not_pwned(root)


# --- releases: append_log, create_release, remove_release(s) ----------------------------------


@BOUNDED
@given(comp=components, name=names, line=texts, line2=texts)
def test_create_release_makes_exactly_one_dir_and_logs_the_line_verbatim(
    tmp_path, comp, name, line, line2
):
    root = new_root(tmp_path)
    with recorded("create_release/append_log", "hostile path/name/log line"):
        lay = setup_layout(root, comp)
        if lay is None or name_refused(name, shell.create_release, lay, name, line):
            return
        before = tree(root)
        res = run(shell.create_release(lay, name, line), root)
        assert res.returncode == 0, res.stderr
        made = os.path.relpath(lay.release(name), root)
        log = os.path.relpath(lay.log, root)
        assert tree(root) == before | {made, log}
        assert Path(lay.log).read_bytes().decode() == f"\n{line}\n"
        again = run(shell.create_release(lay, name, line2), root)
        assert again.returncode != 0  # never reused
        assert Path(lay.log).read_bytes().decode() == f"\n{line}\n"
        assert run(shell.append_log(lay, line2), root).returncode == 0
        assert Path(lay.log).read_bytes().decode() == f"\n{line}\n\n{line2}\n"
        assert_not_pwned(root)


SIBLINGS = ("keep", "keep*", "k?ep", "[k]eep", "keep name", "keep-", "keep;x")


@BOUNDED
@given(comp=components, name=names, line=texts, live=st.booleans())
def test_remove_release_removes_exactly_that_release_never_the_live_one(
    tmp_path, comp, name, line, live
):
    root = new_root(tmp_path)
    with recorded("remove_release/remove_releases"):
        lay = setup_layout(root, comp)
        if lay is None or name_refused(name, shell.remove_release, lay, name, line):
            return
        with pytest.raises(ConfigError):
            shell.remove_releases(lay, ["keep", name, "../x"])
        siblings = [s for s in SIBLINGS if s != name]
        for n in [*siblings, name]:
            Path(lay.release(n), "sub").mkdir(parents=True)
            Path(lay.release(n), "sub", "f").write_text(n, encoding="utf-8")
        if live:
            os.symlink(lay.current_target(name), lay.current)
            res = run(shell.remove_release(lay, name, line), root)
            assert res.returncode == shell.REFUSED
            if echo_safe(name):
                assert res.stderr == f"refusing to remove the live release {name}\n"
            assert Path(lay.release(name), "sub", "f").read_bytes().decode() == name
            assert not os.path.exists(lay.log)
            res = run(shell.remove_releases(lay, [siblings[0], name]), root)
            assert res.returncode == shell.REFUSED
            assert os.path.isdir(lay.release(name))
            assert sorted(os.listdir(lay.releases)) == sorted([*siblings[1:], name])
        else:
            res = run(shell.remove_release(lay, name, line), root)
            assert res.returncode == 0, res.stderr
            assert sorted(os.listdir(lay.releases)) == sorted(siblings)
            if line:  # an empty log line means "log nothing"
                assert Path(lay.log).read_bytes().decode() == f"\n{line}\n"
            else:
                assert not os.path.exists(lay.log)
            res = run(shell.remove_releases(lay, [name, *siblings[:2]]), root)
            assert res.returncode == 0, res.stderr
            assert sorted(os.listdir(lay.releases)) == sorted(siblings[2:])
        for n in siblings[2:]:
            assert Path(lay.release(n), "sub", "f").read_bytes().decode() == n
        assert_not_pwned(root)


# --- shared and writable ----------------------------------------------------------------------


def _items_refused(name: str, paths: list[str], build) -> bool:
    """True (after checking the builder refuses too) if the name or any path is refused."""
    bad = [p for p in paths if refusal(check_relative_path, p, "path") is not None]
    if refusal(check_release_name, name) is None and not bad:
        return False
    event("release name or path refused")
    with pytest.raises(ConfigError):
        build()
    return True


@BOUNDED
@given(comp=components, name=names, item=items)
def test_link_shared_dir_links_exactly_that_path(tmp_path, comp, name, item):
    root = new_root(tmp_path)
    with recorded("link_shared_dir"):
        lay = setup_layout(root, comp)
        if lay is None or _items_refused(
            name, [item], lambda: shell.link_shared_dir(lay, name, item)
        ):
            return
        clean = check_relative_path(item, "path")
        target = Path(lay.release(name), clean)
        target.mkdir(parents=True)
        (target / "seed").write_text("seed")
        for _ in range(2):  # a retry changes nothing
            res = run(shell.link_shared_dir(lay, name, item), root)
            assert res.returncode == 0, res.stderr
            assert os.readlink(target) == "../" * (clean.count("/") + 2) + "shared/" + clean
            assert (target / "seed").read_text() == "seed"
            assert Path(lay.shared, clean, "seed").read_text() == "seed"
        assert_not_pwned(root)


@BOUNDED
@given(comp=components, name=names, item=items, seeded=st.booleans())
def test_link_shared_file_links_exactly_that_file_or_names_it_missing(
    tmp_path, comp, name, item, seeded
):
    root = new_root(tmp_path)
    with recorded("link_shared_file"):
        lay = setup_layout(root, comp)
        if lay is None or _items_refused(
            name, [item], lambda: shell.link_shared_file(lay, name, item)
        ):
            return
        clean = check_relative_path(item, "path")
        target = Path(lay.release(name), clean)
        target.parent.mkdir(parents=True, exist_ok=True)
        shared = Path(lay.shared, clean)
        if not seeded:
            before = tree(root)
            res = run(shell.link_shared_file(lay, name, item), root)
            assert res.returncode == shell.SHARED_MISSING
            if echo_safe(item, str(shared)):
                assert res.stderr == (
                    f"shared file {item} is missing: create {shared} on the host\n"
                )
            assert tree(root) == before
            return
        target.write_text("from the release")
        res = run(shell.link_shared_file(lay, name, item), root)
        assert res.returncode == 0, res.stderr
        assert os.readlink(target) == "../" * (clean.count("/") + 2) + "shared/" + clean
        assert target.read_text() == shared.read_text() == "from the release"
        assert_not_pwned(root)


def _me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


@BOUNDED
@given(
    comp=components,
    name=names,
    dirs=st.lists(items, min_size=1, max_size=3),
    mode=st.sampled_from(["chmod", "chown", "acl"]),
    recursive=st.booleans(),
)
def test_make_writable_changes_exactly_the_named_dirs(tmp_path, comp, name, dirs, mode, recursive):
    root = new_root(tmp_path)
    with recorded("make_writable"):
        lay = setup_layout(root, comp)

        def build():
            return shell.make_writable(lay, name, dirs, mode, http_user=_me(), recursive=recursive)

        if lay is None or _items_refused(name, dirs, build):
            return
        Path(lay.release(name)).mkdir()
        for d in dirs:
            Path(lay.release(name), check_relative_path(d, "path")).mkdir(
                parents=True, exist_ok=True
            )
            Path(lay.release(name), check_relative_path(d, "path")).chmod(0o755)
        before = tree(root)
        res = run(build(), root)
        assert res.returncode == 0, res.stderr
        assert tree(root) == before
        for d in dirs:
            path = Path(lay.release(name), check_relative_path(d, "path"))
            assert path.is_dir()
            if mode == "chmod":
                assert path.stat().st_mode & stat.S_IWGRP
            elif mode == "chown":
                assert path.stat().st_uid == os.getuid()
            else:
                acl = subprocess.run(
                    ["getfacl", "-p", "--", str(path)], capture_output=True, text=True, check=True
                ).stdout
                assert f"user:{_me()}:rwx" in acl
        assert_not_pwned(root)


@BOUNDED
@given(
    user=st.one_of(st.sampled_from(["root", "www-data", "nobody", "no.such.user", "a-b_c"]), texts),
    chmod_mode=st.one_of(
        st.sampled_from(["ug+rwX", "0775", "-w", "u=rwx,g=rx", "--", "-R", "a+", "777 /", "+t"]),
        texts,
    ),
)
def test_make_writable_user_and_mode_are_one_argument_each(tmp_path, user, chmod_mode):
    """http_user passes the inventory's user-name check or is refused; the chmod mode (any
    string: the inventory does not check it) reaches chmod as exactly one argument."""
    root = new_root(tmp_path)
    with recorded("make_writable", "hostile http_user/chmod mode"):
        lay = setup_layout(root, "app")
        assert lay is not None
        Path(lay.release("R1"), "storage").mkdir(parents=True)
        twin = root / "twin"
        twin.mkdir()
        res = run(shell.make_writable(lay, "R1", ["storage"], "chmod", chmod_mode=chmod_mode), root)
        direct = subprocess.run(
            ["chmod", "-R", chmod_mode, "--", f"{twin}/"],
            cwd=root,
            capture_output=True,
            check=False,
        )
        assert (res.returncode == 0) == (direct.returncode == 0), res.stderr
        mode_of = stat.S_IMODE
        assert mode_of(Path(lay.release("R1"), "storage").stat().st_mode) == mode_of(
            twin.stat().st_mode
        )
        # An empty http_user is refused too, for chown and acl, when the host is validated.
        if not user or refusal(KEYS["http_user"].check, user) is not None:
            event("http_user refused by the inventory")
        else:
            res = run(shell.make_writable(lay, "R1", ["storage"], "chown", http_user=user), root)
            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                uid = None
            if uid is None or os.getuid() not in (0, uid):  # no such user, or not ours to give
                assert res.returncode != 0
            else:
                assert res.returncode == 0, res.stderr
                assert Path(lay.release("R1"), "storage").stat().st_uid == uid
        assert_not_pwned(root)


# --- sequence, remote, hook -------------------------------------------------------------------


def test_a_part_whose_stderr_lacks_a_final_newline_keeps_its_text_and_the_marker():
    """`printf warn >&2` leaves the next marker on the same line: both are still read."""
    res = subprocess.run(
        [
            "sh",
            "-c",
            shell.sequence([("hook a", "printf warn >&2"), ("hook b", "printf oops >&2; exit 3")]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 3
    assert remote.split_step_marker(res.stderr) == ("hook b", "warn\noops")
    assert remote.last_started(res.stderr) == "hook b"


def parsable(name: str) -> bool:
    """A step name that reads back from a marker line as it was (one line, no edge spaces)."""
    return len(f"x{name}x".splitlines()) == 1 and name == name.strip()


@BOUNDED
@given(
    part_names=st.lists(texts, min_size=1, max_size=3),
    fail_at=st.integers(0, 3),
    code=st.integers(1, 125),
)
def test_sequence_stops_at_the_failing_part_and_names_it(tmp_path, part_names, fail_at, code):
    root = new_root(tmp_path)
    with recorded("sequence", "hostile step name"):
        parts = [
            (n, f"echo {i}" if i != fail_at else f"echo {i}; exit {code}")
            for i, n in enumerate(part_names)
        ]
        parts.insert(1, ("skipped $(touch pwned)", None))
        res = run(shell.sequence(parts), root)
        ran = min(fail_at + 1, len(part_names))
        assert res.stdout == "".join(f"{i}\n" for i in range(ran))
        started = "".join(f"{shell.START_MARKER}{n}\n" for n in part_names[:ran])
        if fail_at < len(part_names):
            assert res.returncode == code
            name = part_names[fail_at]
            if all(echo_safe(n) for n in part_names[:ran]):
                assert res.stderr == f"{started}{shell.STEP_MARKER}{name}\n"
            if all(echo_safe(n) and parsable(n) for n in part_names[:ran]):
                assert remote.split_step_marker(res.stderr) == (name, "")
                assert remote.last_started(res.stderr) == name
        else:
            assert res.returncode == 0
            if all(echo_safe(n) for n in part_names):
                assert res.stderr == started
            if all(echo_safe(n) and parsable(n) for n in part_names):
                assert remote.split_step_marker(res.stderr) == (None, "")
                assert remote.last_started(res.stderr) == part_names[-1]
        assert_not_pwned(root)


@BOUNDED
@given(
    value=texts,
    login=st.sampled_from(["sh", "bash"]),
    stdin=st.booleans(),
    umask=st.sampled_from(["", "022", "077"]),
)
def test_remote_runs_exactly_its_script_from_stdin_with_stdin_closed(
    tmp_path, value, login, stdin, umask
):
    """The remote line as the login shell (dash or bash) parses it: a fixed `sh -c` that reads
    the script from stdin; the script is in no argument, and what follows it on stdin reaches
    the script only when it asks for stdin (the go signal)."""
    root = new_root(tmp_path)
    with recorded("remote", "hostile script text"):
        script = f"printf '%s|' {q(value)}; umask; cat"
        line = shell.remote(stdin=stdin)
        assert line == shell.remote(stdin=stdin)  # nothing of the script in the argv
        assert shlex.split(line)[:2] == ["sh", "-c"] and len(shlex.split(line)) == 3
        res = run(line, root, login=login, input=shell.script_payload(script, umask) + b"fed\n")
        assert res.returncode == 0, res.stderr
        mask = f"{int(umask or '022', 8):04o}"  # the test's own umask is 022
        assert res.stdout == value + "|" + mask + "\n" + ("fed\n" if stdin else "")
        assert_not_pwned(root)


ENV_NAMES = ("DEPLOY_PATH", "RELEASE", "RELEASE_PATH", "STAGE", "HOST", "REVISION")


@BOUNDED
@given(
    comp=components,
    requires=st.one_of(st.just(""), components),
    present=st.booleans(),
    values=st.lists(texts, min_size=1, max_size=3),
)
def test_hook_runs_in_exactly_its_dir_with_exactly_its_env(
    tmp_path, comp, requires, present, values
):
    root = new_root(tmp_path)
    with recorded("hook", "hostile cwd/requires/env value"):
        cwd = root / "srv" / comp
        cwd.mkdir(parents=True)
        if requires and present:
            (cwd / requires).write_text("{}")
        env = list(zip(ENV_NAMES, values, strict=False))
        refs = " ".join(f'"${n}"' for n, _ in env)
        res = run(
            shell.hook(str(cwd), f"printf '%s\\0' \"$PWD\" {refs}", requires=requires, env=env),
            root,
        )
        assert res.returncode == 0, res.stderr
        if requires and not present:
            assert res.stdout == ""
        else:
            assert res.stdout.split("\0") == [str(cwd), *values, ""]
        assert_not_pwned(root)


# `${X:-q}` twice must not name a real command: `${X:-d}` made `dd`, whose timing on stderr
# differs between two runs.
HOOK_BITS = (
    "echo a",
    "printf '%s' b",
    "exit 3",
    "exit",
    "true",
    "false",
    "'",
    '"',
    "}",
    "{",
    "(",
    ")",
    "fi",
    "then",
    "done",
    ";",
    "&&",
    "||",
    "|",
    "\n",
    " ",
    "#",
    "\\",
    "$(printf s)",
    "`printf t`",
    "echo $0",
    "read x",
    "cat",
    ">out",
    "2>&1",
    "$HOME",
    "${X:-q}",
    "exit 7 }",
    "touch made",
)


@BOUNDED
@given(command=st.lists(st.sampled_from(HOOK_BITS), min_size=1, max_size=6).map("".join))
def test_hook_runs_the_users_command_as_sh_would(tmp_path, command):
    """A hook command is the user's own shell text: it behaves as `sh -c COMMAND` in the
    release (without being an argument of any process), with stdin closed, and its quotes or
    braces cannot change the script around it."""
    root = new_root(tmp_path)
    with recorded("hook", "hostile command text"):
        direct_dir, hook_dir = root / "direct", root / "hook it's $(x)"
        direct_dir.mkdir()
        hook_dir.mkdir()
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "HOME": str(root)}
        direct = exact(
            subprocess.run(
                ["sh", "-c", command],
                cwd=direct_dir,
                capture_output=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
        )
        via = run(shell.hook(str(hook_dir), command), root, input="not for the hook\n")
        assert via.returncode == direct.returncode
        assert via.stdout == direct.stdout
        # Two processes of a pipeline write stderr in either order: compare the bytes. The
        # command is `eval`'s text (not `sh -c`'s, which ps would show): sh says so in errors.
        assert sorted(via.stderr.replace("eval: ", "")) == sorted(direct.stderr)
        assert sorted(os.listdir(hook_dir)) == sorted(os.listdir(direct_dir))


# --- nginx include: write_if_changed, restore_previous, nginx_check, nginx_reload_and_wait ----


@BOUNDED
@given(comp=components, fname=components, content=texts, content2=texts)
def test_write_if_changed_writes_exactly_the_content_and_restore_puts_it_back(
    tmp_path, comp, fname, content, content2
):
    root = new_root(tmp_path)
    with recorded("write_if_changed/restore_previous", "hostile path/content"):
        path = root / "etc" / comp / fname
        path.parent.mkdir(parents=True)
        target = str(path)

        def written(c: str) -> str:  # trailing newlines are normalised to one
            return c.rstrip("\n") + "\n"

        res = run(shell.write_if_changed(target, content), root)
        assert (res.returncode, res.stdout) == (0, "changed\n"), res.stderr
        assert path.read_bytes().decode() == written(content)
        assert sorted(os.listdir(path.parent)) == [fname]
        res = run(shell.write_if_changed(target, content), root)
        assert (res.returncode, res.stdout) == (0, "unchanged\n"), res.stderr
        if written(content2) != written(content):
            res = run(shell.write_if_changed(target, content2), root)
            assert (res.returncode, res.stdout) == (0, "changed\n"), res.stderr
            assert path.read_bytes().decode() == written(content2)
            prev = Path(target + ".prev")
            assert prev.read_bytes().decode() == written(content)
            assert run(shell.restore_previous(target), root).returncode == 0
            assert path.read_bytes().decode() == written(content)
        # Nothing to go back to: restoring removes the file (the first write made it).
        assert run(shell.restore_previous(target), root).returncode == 0
        assert os.listdir(path.parent) == []
        assert_not_pwned(root)


@BOUNDED
@given(
    comp=components,
    fname=components,
    content=texts,
    test=st.sampled_from(["true", "exit 3", "echo bad $(touch x) >&2; exit 1"]),
    public_exists=st.booleans(),
    previous=st.one_of(st.none(), texts),
)
def test_nginx_check_tests_the_include_then_puts_it_back(
    tmp_path, comp, fname, content, test, public_exists, previous
):
    root = new_root(tmp_path)
    with recorded("nginx_check", "hostile path/include"):
        public = root / "srv" / comp / "public"
        if public_exists:
            public.mkdir(parents=True)
        root_file = root / "etc" / fname
        root_file.parent.mkdir()
        if previous is not None:
            root_file.write_text(previous, encoding="utf-8")
        res = run(shell.nginx_check(str(public), str(root_file), content, test), root)
        if not public_exists:
            assert res.returncode == 1
            if echo_safe(str(public)):
                assert res.stderr == f"public directory missing: {public}\n"
        elif test == "true" or (previous is not None and previous.rstrip("\n") == content):
            # An include holding the content already (trailing newlines aside) is not tested.
            assert res.returncode == 0, res.stderr
        elif (
            content.endswith("\n")
            and previous is not None
            and (previous.rstrip("\n") == content.rstrip("\n"))
        ):
            event("content ends with a newline: see test_write_if_changed_with_trailing_newlines")
        else:
            assert res.returncode == (3 if test == "exit 3" else 1)
            assert res.stderr.endswith("nginx test failed with the new include\n")
        if previous is None:
            assert not os.path.lexists(root_file)
        else:
            assert root_file.read_bytes().decode() == previous
        assert sorted(os.listdir(root_file.parent)) == ([fname] if previous is not None else [])
        assert_not_pwned(root)


PID_FILE_TEXT = (
    "$(touch pwned)",
    "`touch pwned`",
    "1 2",
    "*",
    "",
    "-1",
    "99999999",
    "$$",
    "1;touch pwned",
    "../../proc/self",
)


@BOUNDED
@given(
    comp=components,
    pid=st.one_of(st.none(), st.sampled_from(PID_FILE_TEXT)),
    reload=st.sampled_from(["true", "exit 4"]),
)
def test_nginx_reload_and_wait_reads_exactly_its_pid_file(tmp_path, comp, pid, reload):
    root = new_root(tmp_path)
    with recorded("nginx_reload_and_wait", "hostile pid file path/content"):
        pid_file = root / "run" / comp / "nginx.pid"
        pid_file.parent.mkdir(parents=True)
        if pid is not None:
            pid_file.write_text(pid + "\n")
        res = run(shell.nginx_reload_and_wait(reload, str(pid_file), 2), root)
        if reload != "true":
            assert res.returncode == 4
        else:
            assert res.returncode == 0, res.stderr
            warn = f"{shell.WARN_MARKER}nginx pid file {pid_file} not readable: not waiting\n"
            if pid is None or pid == "":
                if echo_safe(str(pid_file)):
                    assert res.stdout == warn
            else:
                assert shell.WARN_MARKER not in res.stdout
        assert_not_pwned(root)


# --- php-fpm: fcgi_status, opcache_reset, health_check ----------------------------------------


FCGI_ANSWERS = (
    "",
    "Status: 200 OK\r\n",
    "Status: 204 No Content\r\n",
    "Status: 404 Not Found\r\n",
    "Status: 500 Oops\r\n",
    "down",
)


@SLOW
@given(
    socket=texts, script=texts, uri=texts, document_root=texts, answer=st.sampled_from(FCGI_ANSWERS)
)
def test_fcgi_status_sends_exactly_its_request(
    tmp_path, socket, script, uri, document_root, answer
):
    root = new_root(tmp_path)
    with recorded("fcgi_status", "hostile socket/script/uri"):
        bindir = fake_tools(root)
        if answer == "down":
            (bindir / "mode").write_text("down")
        else:
            (bindir / "fcgi-head").write_text(answer)
        res = run(shell.fcgi_status(socket, script, uri, document_root), root, path=bindir)
        [call] = calls(bindir)
        assert call["argv"] == ["-bind", "-connect", socket]
        path, _, query = uri.partition("?")
        call["env"].pop("LC_CTYPE", None)  # set by Python's own C locale coercion (PEP 538)
        assert call["env"] == {
            "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "SCRIPT_FILENAME": script,
            "SCRIPT_NAME": "/" + script.rsplit("/", 1)[-1],
            "REQUEST_URI": uri,
            "DOCUMENT_URI": path,
            "QUERY_STRING": query,
            "DOCUMENT_ROOT": document_root,
            "REQUEST_METHOD": "GET",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "HTTP_HOST": "localhost",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REDIRECT_STATUS": "200",
        }
        code = answer.split()[1] if answer.startswith("Status:") else "200"
        if answer == "down":
            assert res.returncode == 1
            if echo_safe(uri, socket):
                assert res.stderr == f"warm-up {uri}: cannot reach php-fpm at {socket}\n"
        elif code.startswith("2"):
            assert res.returncode == 0, res.stderr
        else:
            assert res.returncode == 1
            if echo_safe(uri):
                assert res.stderr == f"warm-up {uri} answered {code}\n"
        assert_not_pwned(root)


urls = texts.filter(lambda u: not any(c in u for c in "\r\n\0"))


def curl_config_url(config: str) -> str:
    """The URL in the one `url = "..."` line atomicdeploy feeds to `curl -K -`, unescaped as
    curl's config parser does (backslash escapes inside double quotes)."""
    line = config.removesuffix("\n")
    assert "\n" not in line and line.startswith('url = "') and line.endswith('"'), config
    return re.sub(r"\\(.)", r"\1", line[len('url = "') : -1])


@SLOW
@given(
    strategy=st.one_of(st.sampled_from(["fcgi", "cachetool", "http", "fpm-reload", "none"]), texts),
    comp=components,
    socket=texts,
    url=urls,
    works=st.booleans(),
)
def test_opcache_reset_sends_exactly_its_socket_url_and_script(
    tmp_path, strategy, comp, socket, url, works
):
    root = new_root(tmp_path)
    with recorded("opcache_reset", "hostile socket/url/dep dir"):
        if strategy not in ("fcgi", "cachetool", "http", "fpm-reload", "none"):
            with pytest.raises(ValueError, match="unknown opcache strategy") as exc:
                shell.opcache_reset(strategy, socket=socket, url=url)
            assert_clear(str(exc.value))
            return
        lay = setup_layout(root, comp)
        if lay is None:
            return
        bindir = fake_tools(root)
        if not works:
            (bindir / "mode").write_text("fail")
        token = "0123456789abcdef0123456789abcdef"
        script = shell.opcache_reset(
            strategy,
            socket=socket,
            dep_dir=lay.dep,
            token=token,
            cachetool="cachetool",
            url=url,
            reload="true" if works else "echo 'reload: no $(touch x)'; exit 3",
        )
        if strategy == "none":
            assert script is None
            return
        before = tree(root)
        res = run(script, root, path=bindir)
        assert res.returncode == 0, res.stderr  # a failed reset is a warning, not a failure
        log = calls(bindir)
        if strategy == "fcgi":
            [call] = log
            assert call["argv"] == ["-bind", "-connect", socket]
            assert call["env"]["SCRIPT_FILENAME"] == f"{lay.dep}/opcache-reset-{token}.php"
            assert call["env"]["DOCUMENT_ROOT"] == lay.dep
        elif strategy == "cachetool":
            assert [c["argv"] for c in log] == [["opcache:reset", f"--fcgi={socket}"]]
        elif strategy == "http":
            assert [c["argv"] for c in log] == [["-fsS", "--max-time", "10", "-K", "-"]]
            assert curl_config_url(log[0]["config"]) == url  # on stdin: no password in argv
        else:
            assert log == []
        last = {
            "fcgi": "opcache_reset() failed or opcache is off",
            "cachetool": "cachetool: cannot connect",
            "http": "curl: (22) The requested URL returned error: 500",
            "fpm-reload": "reload: no $(touch x)",
        }[strategy]
        warn = f"{shell.WARN_MARKER}opcache reset ({strategy}) failed: {last}\n"
        assert res.stdout == ("" if works else warn)
        assert tree(root) - {"bin/calls.jsonl"} == before  # the php script is removed again
        assert_not_pwned(root)


@SLOW
@given(
    url=urls,
    contains=texts.filter(lambda c: "\n" not in c),
    code=st.sampled_from([200, 204, 301, 404, 500]),
    status=st.sampled_from([200, 404]),
    body=texts,
    timeout=st.integers(1, 600),
)
def test_health_check_passes_exactly_when_status_and_text_match(
    tmp_path, url, contains, code, status, body, timeout
):
    root = new_root(tmp_path)
    with recorded("health_check", "hostile url/expected text"):
        bindir = fake_tools(root)
        (bindir / "code").write_text(str(code))
        (bindir / "body").write_text(body, encoding="utf-8")
        res = run(shell.health_check(url, status, contains, timeout), root, path=bindir)
        [call] = calls(bindir)
        assert call["argv"] == [
            "-sS",
            "-i",
            "--max-time",
            str(timeout),
            "-w",
            "\\n%{http_code}",
            "-K",
            "-",
        ]
        assert curl_config_url(call["config"]) == url
        response = f"HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\n\r\n{body}"
        if code != status:
            assert res.returncode == 1
            if echo_safe(url):
                assert res.stderr == f"health check: {url} answered {code}, expected {status}\n"
        elif contains and contains not in response:
            assert res.returncode == 1
            if echo_safe(repr(contains)):
                assert res.stderr == f"health check: the response lacks {contains!r}\n"
        else:
            assert res.returncode == 0, res.stderr
        assert_not_pwned(root)


# --- go_live ----------------------------------------------------------------------------------


@SLOW
@given(
    comp=components,
    name=names,
    lines=st.lists(texts, max_size=2),
    fname=components,
    content=texts,
    test_ok=st.booleans(),
    had_prev=st.booleans(),
)
def test_go_live_switches_writes_and_logs_exactly_or_puts_everything_back(
    tmp_path, comp, name, lines, fname, content, test_ok, had_prev
):
    root = new_root(tmp_path)
    with recorded("go_live"):
        lay = setup_layout(root, comp)
        if lay is None or name_refused(name, shell.go_live, lay, name):
            return
        Path(lay.release(name)).mkdir()
        if had_prev and name != "R0":
            Path(lay.release("R0")).mkdir()
            os.symlink(lay.current_target("R0"), lay.current)
        prev = os.readlink(lay.current) if os.path.islink(lay.current) else None
        root_file = root / "etc" / fname
        root_file.parent.mkdir()
        reload = shell.nginx_reload_and_wait("true", str(root / "no such pid"), 1)
        nginx = (str(root_file), content, "true" if test_ok else "exit 3", reload)
        script = shell.go_live(lay, name, log_lines=lines, nginx=nginx)
        res = run(script, root)
        if test_ok:
            assert res.returncode == 0, res.stderr
            assert res.stdout.split("\n")[-2] == f"releases/{name}"
            assert os.readlink(lay.current) == f"releases/{name}"
            # Trailing newlines are normalised to one (see shell.write_if_changed).
            assert root_file.read_bytes().decode() == content.rstrip("\n") + "\n"
            log = "".join(f"\n{line}\n" for line in lines)
            assert (Path(lay.log).read_bytes().decode() if lines else "") == log
        else:
            assert res.returncode == 3
            assert f"{shell.STEP_MARKER}nginx\n" in res.stderr
            assert (os.readlink(lay.current) if prev else None) == prev
            assert not os.path.lexists(lay.current) or prev
            assert not os.path.lexists(root_file)
            assert not os.path.exists(lay.log)
        assert not os.path.lexists(lay.current_tmp)
        assert_not_pwned(root)


# --- ssh and rsync argv -----------------------------------------------------------------------

# rsync's own filter syntax (wildcards, `!`, `+ `/`- ` prefixes, trailing `/`) is the user's
# pattern language, not a quoting problem: exclude names here are literal file names.
exclude_names = components.filter(
    lambda s: not any(c in s for c in "*?[\\") and not s.startswith(("+ ", "- ", "!")) and s.strip()
)
HOST_EDGES = (
    "web1",
    "web1.example.com",
    "::1",
    "-oProxyCommand=touch pwned",
    "h;touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "a b",
    "ü.example",
    "-",
    "h'q",
)
hosts = st.one_of(
    st.sampled_from(HOST_EDGES),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/:@"),
        min_size=1,
        max_size=12,
    ),
)


@SLOW
@given(
    src=components,
    comp=components,
    excludes=st.lists(exclude_names, max_size=2, unique=True),
    host=hosts,
)
def test_rsync_argv_uploads_exactly_the_source_into_the_release(
    tmp_path, src, comp, excludes, host
):
    """Through the tunnel's relay (the host's command run locally), then `fill_release`."""
    root = new_root(tmp_path)
    with recorded("rsync_argv", "hostile source/release path/exclude/host"):
        lay = setup_layout(root, comp)
        if lay is None:
            return
        source = root / "src" / src
        (source / "public").mkdir(parents=True)
        (source / "public" / "index.php").write_text("v2")
        for n in excludes:
            (source / n).write_text("excluded")
        argv = shell.rsync_argv(
            str(source),
            host,
            lay.upload_cache,
            ssh=shell.tunnel_rsh(),
            exclude=excludes,
            timeout=60,
        )
        before = tree(root)
        transport = LocalTransport()
        res = tunnel.run_rsync(transport, argv, timeout=60)
        if host.startswith("-"):
            assert res.returncode != 0  # rsync refuses a host that would be an ssh option
            assert "hostnames may not start with '-'" in res.stderr
        elif res.returncode == 0 or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*|::1", host):
            assert res.returncode == 0, res.stderr
            [channel] = transport.channels  # the host name never reaches the host's shell
            assert shlex.split(channel.command)[:2] == ["rsync", "--server"]
            Path(lay.release("R2")).mkdir()
            assert run(shell.fill_release(lay, "R2"), root).returncode == 0
            assert tree(Path(lay.release("R2"))) == {"public", "public/index.php"}
        else:  # a host rsync cannot parse (`[`, ...) fails the upload and writes nothing
            event("rsync refused the host")
            assert res.stderr.strip()
            assert tree(root) == before
        assert_not_pwned(root)


# --- bugs this file found, fixed: each test is the reproducer ------------------------------


def _msg_cases(root: Path) -> dict[str, tuple[str, str, str]]:
    """builder -> (script, expected stderr/stdout text, where) for a value holding `\\`."""
    lay = Layout(str(root / "srv" / "a\\tb\\c"))
    for d in (lay.releases, lay.shared, lay.dep):
        os.makedirs(d)
    Path(lay.release("R\\n1")).mkdir()
    os.symlink(lay.current_target("R\\n1"), lay.current)
    return {
        "remove_release": (
            shell.remove_release(lay, "R\\n1"),
            "refusing to remove the live release R\\n1\n",
            "stderr",
        ),
        "link_shared_file": (
            shell.link_shared_file(lay, "R\\n1", "x\\cy"),
            f"shared file x\\cy is missing: create {lay.shared}/x\\cy on the host\n",
            "stderr",
        ),
        "sequence": (
            shell.sequence([("hook a\\tb", "exit 3")]),
            f"{shell.START_MARKER}hook a\\tb\n{shell.STEP_MARKER}hook a\\tb\n",
            "stderr",
        ),
        "nginx_check": (
            shell.nginx_check(str(root / "no\\tpublic"), str(root / "f"), "x", "true"),
            f"public directory missing: {root}/no\\tpublic\n",
            "stderr",
        ),
        "nginx_reload_and_wait": (
            shell.nginx_reload_and_wait("true", "/run/a\\cb.pid", 1),
            f"{shell.WARN_MARKER}nginx pid file /run/a\\cb.pid not readable: not waiting\n",
            "stdout",
        ),
    }


MESSAGE_BUILDERS = (
    "remove_release",
    "link_shared_file",
    "sequence",
    "nginx_check",
    "nginx_reload_and_wait",
)


@pytest.mark.parametrize("builder", MESSAGE_BUILDERS)
def test_messages_keep_backslashes_under_dash(tmp_path, builder):
    with recorded(builder, "backslash in a quoted message"):
        script, expected, where = _msg_cases(tmp_path)[builder]
        res = run(script, tmp_path)
        assert getattr(res, where) == expected


def test_setup_message_keeps_backslashes_under_dash(tmp_path):
    with recorded("setup", "backslash in a quoted message"):
        lay = Layout(str(tmp_path / "a\\tb\\c"))
        os.makedirs(lay.current)
        res = run(shell.setup(lay), tmp_path)
        assert res.returncode == shell.CURRENT_IS_DIR
        assert res.stderr == (
            f"{lay.current} is a real directory: move it away so that it can be an atomic symlink\n"
        )


CURL_CONFIG = 'url = "file:///dev/null"\noutput = "pwned"\n'


@pytest.mark.parametrize("builder", ["health_check", "opcache_reset http"])
def test_a_url_is_never_a_curl_option(tmp_path, builder):
    with recorded(builder.split()[0], "URL starting with '-'"):
        (tmp_path / "cfg").write_text(CURL_CONFIG)
        url = "-Kcfg"
        for key in ("healthcheck", "opcache"):
            check = KEYS[key].check
            value = {"url": url} if key == "healthcheck" else {"strategy": "http", "url": url}
            assert refusal(check, value) is not None  # the inventory refuses it first...
        if builder == "health_check":
            script = shell.health_check(url, 200, "", 5)
        else:
            script = shell.opcache_reset("http", url=url)
        run(script, tmp_path)  # ...and curl never takes it as an option (`--`)
        assert_not_pwned(tmp_path)


def test_write_if_changed_with_trailing_newlines(tmp_path):
    with recorded("write_if_changed/restore_previous", "content ending with a newline"):
        path = str(tmp_path / "root.conf")
        content = "set $root_dir /srv/app/releases/R1/public;\n"
        assert run(shell.write_if_changed(path, content), tmp_path).stdout == "changed\n"
        res = run(shell.write_if_changed(path, content), tmp_path)
        assert res.stdout == "unchanged\n"


@pytest.mark.parametrize("case", ["exit 3", "go_live: nginx -t fails", "go_live: no go signal"])
def test_then_unlock_unlocks_after_a_script_that_exits(tmp_path, case):
    with recorded("unlock_own/then_unlock", "script that exits"):
        lay = Layout(str(tmp_path / "app it's"))
        assert run(shell.setup(lay), tmp_path).returncode == 0
        Path(lay.release("R1")).mkdir()
        owner = json.dumps({"token": "t0k", "user": "alice"}, sort_keys=True)
        assert run(shell.lock(lay, owner), tmp_path).returncode == 0
        if case == "exit 3":
            script = "exit 3"
        elif case == "go_live: nginx -t fails":
            nginx = (str(tmp_path / "root.conf"), "set $root_dir /x;", "exit 3", "true")
            script = shell.go_live(lay, "R1", nginx=nginx)
        else:
            script = shell.go_live(lay, "R1", armed=True)
        res = run(shell.then_unlock(script, lay, "t0k"), tmp_path, input="")
        assert res.returncode != 0  # the script's own failure is kept...
        assert not os.path.lexists(lay.lock)  # ...and our lock is released whatever happened


def test_a_non_ascii_token_is_refused(tmp_path):
    """json.dumps escapes non-ASCII in the owner record, so such a lock could never be
    matched and released: the token must be ASCII letters and digits."""
    with recorded("unlock_own/then_unlock", "non-ASCII alnum token"):
        lay = Layout(str(tmp_path / "app"))
        with pytest.raises(ValueError, match="alphanumeric"):
            shell.unlock_own(lay, "ü1")


def test_hook_env_names_are_checked(tmp_path):
    with recorded("hook", "hostile env name"):
        try:
            script = shell.hook(str(tmp_path), "true", env=[("X=1; touch pwned; Y", "v")])
        except (ValueError, ConfigError) as exc:
            assert_clear(str(exc))
            return
        run(script, tmp_path)
        assert_not_pwned(tmp_path)


def test_the_sandbox_sees_an_injection(tmp_path):
    """Guard for the guards: unquoted text really would leave `pwned` behind."""
    res = run("mkdir -p a/b && cd a/b && echo $(touch pwned)", tmp_path)
    assert res.returncode == 0
    with pytest.raises(AssertionError, match="injected code ran"):
        assert_not_pwned(tmp_path)
