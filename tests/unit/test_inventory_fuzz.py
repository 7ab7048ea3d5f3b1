"""Inventory fuzzing (issue "Reliability and security: bad input").

Whatever the file holds, `inventory.parse` and `inventory.load` either return an
Inventory or raise a ConfigError whose text is one line naming the file; no other
exception ever escapes, nothing in the file is executed (safe loading only), and
alias or `{{ref}}` bombs finish fast. `fab --list` turns a bad inventory into exit 2
and one stderr line, never a traceback. Each example is counted in the fault report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory import KEYS, MAX_INVENTORY_BYTES, Inventory, load, parse
from tests import faults

NAME = "inventory.yml"
REPO = Path(__file__).resolve().parents[2]
OUTCOME = "an Inventory, or one ConfigError line naming the file"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


def recorded(kind: str):
    """One try of `kind` in the fault report."""
    return faults.trying("bad input", f"inventory: {kind}", OUTCOME)


def one_line(exc: ConfigError, label: str = NAME) -> str:
    """Every problem found is one line of its own, naming the file."""
    message = str(exc)
    lines = message.split("\n")
    assert all(line.strip() for line in lines), repr(message)
    assert all(label in line for line in lines), repr(message)
    return message


def note(what: str) -> None:
    if currently_in_test_context():  # hypothesis statistics; plain tests share these helpers
        event(what)


def outcome(read) -> str:
    """`read()` returns an Inventory or raises a one-line ConfigError; anything else fails."""
    try:
        inv = read()
    except ConfigError as exc:
        note("refused")
        return one_line(exc)
    assert isinstance(inv, Inventory)
    note("loaded")
    return "loaded"


def ref(key: str) -> str:
    return "{{" + key + "}}"


def check_text(kind: str, text: str) -> str:
    with recorded(kind):
        return outcome(lambda: parse(text, Path(NAME)))


def check_file(kind: str, path: Path, data: bytes) -> str:
    with recorded(kind):
        path.write_bytes(data)
        return outcome(lambda: load(path))


# --- generated documents ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=16),
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(),
)
map_keys = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(map_keys, kids, max_size=4),
    max_leaves=16,
)


def dumped(doc: st.SearchStrategy) -> st.SearchStrategy[str]:
    """A document as YAML text, in block or flow style, with or without escaped unicode."""
    return st.builds(
        lambda d, flow, uni, width: yaml.safe_dump(
            d, default_flow_style=flow, allow_unicode=uni, sort_keys=False, width=width
        ),
        doc,
        st.sampled_from([False, True, None]),
        st.booleans(),
        st.sampled_from([20, 80, 4096]),
    )


@FUZZ
@given(text=dumped(values))
def test_random_yaml_documents(text):
    check_text("random YAML document", text)


SUB_KEYS = (
    "root_file",
    "public_dir",
    "template",
    "test",
    "reload",
    "pid_file",
    "reload_timeout",
    "strategy",
    "socket",
    "cachetool",
    "url",
    "status",
    "contains",
    "timeout",
    "stage",
    "after_shared",
    "before_release",
    "on_failure",
    "run",
    "once",
    "bogus",
)
refs = st.lists(st.sampled_from([*KEYS, "alias", "nope", "labels"]), min_size=1, max_size=3).map(
    lambda ks: " ".join(ref(k) for k in ks)
)
atoms = st.one_of(
    st.sampled_from(
        [
            "/srv/app",
            "/",
            "//",
            "/srv/../etc",
            "srv/app",
            ".",
            "",
            "~/x",
            "storage",
            "../x",
            "/abs",
            "chmod",
            "acl",
            "chown",
            "skip",
            "fcgi",
            "http",
            "none",
            "composer",
            "laravel",
            "http://x",
            "ftp://x",
            "www-data",
            "-x",
            "a b",
            "$(touch pwned)",
            "{public_path}",
            "{x}",
            "prod",
        ]
    ),
    st.integers(-5, 70000),
    st.booleans(),
    st.none(),
    refs,
)
key_values = st.one_of(
    atoms,
    values,
    st.lists(atoms, max_size=3),
    st.dictionaries(
        st.sampled_from(SUB_KEYS), st.one_of(atoms, st.lists(atoms, max_size=2)), max_size=4
    ),
)
HOST_KEYS = (*KEYS, "alias", "stage", "keep_release", "Deploy_Path", "hosts", "config")
host_maps = st.builds(
    lambda m, with_path: {"deploy_path": "/srv/app", **m} if with_path else m,
    st.dictionaries(st.sampled_from(HOST_KEYS), key_values, max_size=6),
    st.booleans(),
)
host_names = st.one_of(
    st.sampled_from(
        [
            "web1",
            "-web",
            "web 1",
            "web1\n",
            "ü",
            "",
            "a" * 300,
            "web1.example.com",
            "1",
            "_x",
            ".x",
            "web1:22",
            "$(touch pwned)",
            "web1\u2028",
        ]
    ),
    st.text(max_size=10),
    st.integers(),
    st.booleans(),
    st.none(),
    st.dates(),
)
inventories = st.fixed_dictionaries(
    {
        "hosts": st.one_of(
            st.dictionaries(host_names, st.one_of(st.none(), host_maps), max_size=3), values
        )
    },
    optional={"config": st.one_of(host_maps, values), "extra": values},
)


@FUZZ
@given(text=dumped(inventories))
def test_inventories_with_wrong_types_unknown_keys_odd_hosts_and_ref_cycles(text):
    check_text("known keys with wrong types, unknown keys, odd hosts, {{ref}} cycles", text)


@FUZZ
@given(
    a=st.sampled_from(sorted(k for k, v in KEYS.items() if v.check.__name__ == "_str")),
    b=st.sampled_from([*KEYS, "alias"]),
    c=st.sampled_from([*KEYS, "alias"]),
)
def test_ref_cycles_are_refused_by_name(a, b, c):
    doc = {
        "hosts": {"web1": {"deploy_path": "/srv/app", a: ref(b), b: "x" + ref(c), c: ref(a) + "y"}}
    }
    message = check_text("{{ref}} cycles", yaml.safe_dump(doc))
    if message != "loaded" and "refers to itself" in message:
        assert any(ref(k) in message for k in (a, b, c)), message


BASE = """\
config:
  deploy_path: /srv/app
  keep_releases: 3
  shared_dirs: [storage]
  labels: {stage: prod}
hosts:
  web1:
    hostname: host-a.example
    port: 22
  web2: {deploy_path: "/srv/{{alias}}", exclude: [.git, node_modules]}
  web3:
    opcache: {socket: /run/php/fpm.sock}
    hooks:
      after_shared:
        - run: php artisan migrate
          once: true
"""
# Fragments spliced into BASE. Digits, anchors and `!!type` tags are left out on purpose:
# the bugs they reach are pinned by the xfail tests at the end, one reproducer each.
SPLICES = (
    ":",
    "-",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "!",
    "!x",
    "!!str",
    "!!binary",
    "|",
    ">",
    "'",
    '"',
    "#",
    "%",
    "@",
    "`",
    "?",
    "? ",
    "\t",
    "\n",
    " ",
    "  ",
    "\\",
    "\0",
    "\x85",
    "\ufeff",
    "ü",
    "<<",
    "<<: ",
    "~",
    "null",
    "yes",
    "no",
    "{{port}}",
    "{{x}}",
    "{{",
    ".inf",
    "*q",
    "&z ",
    "---",
    "...",
    "%YAML",
    "\r",
    "\x1b",
)
cuts = st.integers(1, 8).map(lambda n: -n)  # delete n characters
edits = st.lists(
    st.tuples(st.integers(0, len(BASE)), st.one_of(st.sampled_from(SPLICES), cuts)),
    min_size=1,
    max_size=4,
)


def mutate(text: str, changes: list[tuple[int, str | int]]) -> str:
    for at, change in changes:
        at = min(at, len(text))
        text = (
            text[:at] + change + text[at:]
            if isinstance(change, str)
            else (text[:at] + text[at - change :])
        )
    return text


def test_the_mutation_base_is_a_valid_inventory():
    assert [h.name for h in parse(BASE).hosts] == ["web1", "web2", "web3"]


@FUZZ
@given(changes=edits)
def test_mutated_inventory_text(changes):
    check_text("mutated inventory text", mutate(BASE, changes))


@settings(FUZZ, max_examples=60)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100).map(lambda t: t.encode("utf-16")),
        st.text(max_size=100).map(lambda t: t.encode("latin-1", "replace")),
        st.builds(
            lambda b, cut: BASE.encode()[:cut] + b, st.binary(max_size=8), st.integers(0, len(BASE))
        ),
    )
)
def test_random_bytes_through_load(tmp_path, data):
    check_file("random bytes file", tmp_path / NAME, data)


# --- explicit cases ---------------------------------------------------------------------------

LOL = '["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'


def alias_bomb(levels: int = 9) -> str:
    """Billion laughs: each anchor is nine aliases of the one before (9**9 strings)."""
    out = [f"a0: &a0 {LOL}"]
    out += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(out) + "\n"


def nested_alias_bomb(key: str = "exclude") -> str:
    """The same bomb inside a known key of a host, where values are walked."""
    anchors = [f"&a0 {LOL}"]
    anchors += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return f"hosts:\n  web1:\n    deploy_path: /srv/app\n    {key}: [{', '.join(anchors)}]\n"


VALID = "hosts:\n  web1: {deploy_path: /srv/app, labels: {stage: prod}}\n"
MERGED = """\
defaults: &defaults
  deploy_path: /srv/app
  labels: {stage: prod}
"""
EXPLICIT: dict[str, tuple[str, str | None]] = {
    # kind: (text, expected: None = loads, else a fragment of the one-line error)
    "empty file": ("", "the file is empty"),
    "whitespace only": ("   \n\n  \n", "the file is empty"),
    "tabs and blank lines": (" \t \n\t\n", ""),
    "comments only": ("# nothing here\n", "the file is empty"),
    "invalid YAML": ("hosts: [web1\n", "invalid YAML at line"),
    "unclosed quote": ('hosts: {web1: {deploy_path: "/srv/app}}\n', "invalid YAML"),
    "tab indentation": ("hosts:\n\tweb1: {}\n", "invalid YAML at line 2"),
    "a scalar document": ("just text\n", "the top level must be a map"),
    "a list document": ("- a\n- b\n", "the top level must be a map"),
    "two documents": (VALID + "---\n" + VALID, "invalid YAML"),
    "anchors, aliases and a merge key": (
        "config: &defaults\n  deploy_path: /srv/app\n  labels: &l {stage: prod}\n"
        "hosts:\n  web1:\n    <<: *defaults\n  web2: {labels: *l, keep_releases: 2}\n",
        None,
    ),
    "merge key of a scalar": ("hosts:\n  web1: {<<: 1}\n", "invalid YAML"),
    "billion laughs alias bomb (top level)": (alias_bomb(), "unknown top-level key 'a0'"),
    "undefined alias": ("hosts: *nope\n", "found undefined alias"),
    "self-referencing map alias": ("hosts: &h\n  web1: *h\n", "invalid YAML"),
    "python tag: os.system": (
        'hosts: !!python/object/apply:os.system ["touch pwned"]\n',
        "could not determine a constructor",
    ),
    "python tag: subprocess.Popen": (
        "hosts:\n  web1:\n    deploy_path: !!python/object/new:subprocess.Popen\n"
        "      args: [[touch, pwned]]\n",
        "could not determine a constructor",
    ),
    "python tag: name": ("config: !!python/name:os.system\n", "could not determine a constructor"),
    "python tag: module": ("config: !!python/module:os\n", "could not determine a constructor"),
    "python tag: long form": (
        'hosts: !<tag:yaml.org,2002:python/object/apply:os.system> ["touch pwned"]\n',
        "could not determine a constructor",
    ),
    "python tag: tuple": ("hosts: !!python/tuple [1, 2]\n", "could not determine a constructor"),
    "unknown local tag": ("hosts: !custom {web1: {}}\n", "could not determine a constructor"),
    "binary value": (
        "hosts:\n  web1: {deploy_path: !!binary L3Nydi9hcHA=}\n",
        "deploy_path must be a string, not bytes",
    ),
    "duplicate top-level key": (VALID + VALID, "duplicate key 'hosts' at line 3"),
    "duplicate host": (
        "hosts:\n  web1: {deploy_path: /a}\n  web1: {deploy_path: /b}\n",
        "duplicate key 'web1' at line 3",
    ),
    "duplicate key in a host": (
        "hosts:\n  web1:\n    deploy_path: /a\n    deploy_path: /b\n",
        "host web1: duplicate key 'deploy_path' at line 4",
    ),
    "duplicate key in a nested map": (
        "config:\n  labels: {stage: a, stage: b}\nhosts: {web1: {deploy_path: /a}}\n",
        "config: duplicate key 'stage' at line 2",
    ),
    "complex key": ("? [a, b]\n: 1\n", "a key must be a plain value"),
    "NUL in the text": (VALID + "\0\n", "invalid YAML"),
    "byte order mark": ("\ufeff" + VALID, None),
    "CRLF line ends": (VALID.replace("\n", "\r\n"), None),
    "CR line ends": (VALID.replace("\n", "\r"), None),
    "escape sequences and controls": (
        'hosts:\n  "web\\x1b[31m1": {deploy_path: /srv/app}\n',
        "a host name must be letters",
    ),
    "host name with a newline": (
        'hosts: {"web1\\nweb2": {deploy_path: /srv/app}}\n',
        r"host 'web1\nweb2'",
    ),
    "a 1000 character host name": ("hosts: {" + "a" * 1000 + ": {deploy_path: /a}}\n", None),
    # YAML allows 1024 characters in an implicit key: longer is a clean YAML error.
    "a 10 000 character host name": (
        "hosts: {" + "a" * 10_000 + ": {deploy_path: /a}}\n",
        "invalid YAML at line 1",
    ),
    "a 500 kB value": (
        "hosts:\n  web1: {deploy_path: /srv/app, application: " + "x" * 500_000 + "}\n",
        None,
    ),
    "a 4000-digit port": (
        "hosts: {web1: {deploy_path: /a, port: 1" + "0" * 4000 + "}}\n",
        "port must be between 1 and 65535",
    ),
    "deep flow lists": ("[" * 1200 + "]" * 1200, "nested too deeply"),
    "deep block lists": ("- " * 1200 + "x\n", "nested too deeply"),
    "deep flow maps": ("{a: " * 1200 + "1" + "}" * 1200, "nested too deeply"),
    "deep lists in a host": (
        "hosts:\n  web1:\n    deploy_path: /a\n    exclude: " + "[" * 1200 + "]" * 1200 + "\n",
        "nested too deeply",
    ),
    "{{ref}} self cycle": (
        "hosts: {web1: {deploy_path: '/{{deploy_path}}'}}\n",
        "refers to itself (deploy_path -> deploy_path)",
    ),
    "{{ref}} three-key cycle": (
        "hosts: {web1: {deploy_path: /a, application: '{{source}}', source: '{{composer}}',"
        " composer: '{{application}}'}}\n",
        "refers to itself",
    ),
    "{{ref}} to a map": (
        "hosts: {web1: {deploy_path: /a, application: '{{labels}}', labels: {a: b}}}\n",
        "must refer to a string or number",
    ),
    "{{ref}} to nothing": (
        "hosts: {web1: {deploy_path: '/{{nope}}'}}\n",
        "refers to a key that is not set",
    ),
    "YAML 1.1 booleans": (
        "hosts: {web1: {deploy_path: /a, forward_agent: yes, upload_hardlinks: off}}\n",
        None,
    ),
    "the Norway problem": (
        "hosts: {web1: {deploy_path: /a, labels: {stage: no}}}\n",
        "labels must be a map of names to strings",
    ),
    "float port": ("hosts: {web1: {deploy_path: /a, port: 22.0}}\n", "port must be an integer"),
    "YAML version 9.9": ("%YAML 9.9\n---\n" + VALID, "invalid YAML at line 1"),
}


@pytest.mark.parametrize("kind", list(EXPLICIT))
def test_explicit_bad_inventories(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an executed `touch pwned` would leave its file
    text, expected = EXPLICIT[kind]
    started = time.monotonic()
    with recorded(kind):
        got = outcome(lambda: parse(text, Path(NAME)))
        assert time.monotonic() - started < 10
        if expected is None:
            assert got == "loaded"
        else:
            assert got != "loaded" and expected in got, got
        assert not (tmp_path / "pwned").exists()


FILES: dict[str, tuple[bytes, str]] = {
    "non-UTF-8 file (latin-1)": (
        b"hosts:\n  web1: {deploy_path: /srv/caf\xe9}\n",
        "cannot read inventory: 'utf-8' codec can't decode",
    ),
    "UTF-16 file": (VALID.encode("utf-16"), "cannot read inventory"),
    "binary garbage": (bytes(range(256)) * 8, "cannot read inventory"),
    "binary garbage that is valid UTF-8": (bytes(range(1, 128)) * 8, "invalid YAML"),
    "file larger than 1 MB": (b"# padding\n" * 110_000, f"larger than {MAX_INVENTORY_BYTES} bytes"),
    "empty file": (b"", "the file is empty"),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_explicit_bad_files(kind, tmp_path):
    data, expected = FILES[kind]
    got = check_file(kind, tmp_path / NAME, data)
    assert got != "loaded" and expected in got, got


def test_a_file_of_exactly_the_size_limit_still_loads(tmp_path):
    body = VALID.encode()
    data = body + b"#" * (MAX_INVENTORY_BYTES - len(body) - 1) + b"\n"
    assert len(data) == MAX_INVENTORY_BYTES
    assert check_file("file of exactly 1 MB", tmp_path / NAME, data) == "loaded"


@pytest.mark.parametrize("kind", ["missing file", "a directory"])
def test_unreadable_paths(kind, tmp_path):
    path = tmp_path / NAME
    if kind == "a directory":
        path.mkdir()
    with recorded(kind):
        with pytest.raises(ConfigError) as exc:
            load(path)
        one_line(exc.value)


# --- fab --list on a bad inventory: exit 2, one stderr line, no traceback --------------------

FABFILE = "from atomicdeploy import namespace\nns = namespace()\n"
FAB_CASES: dict[str, tuple[bytes, str]] = {
    "invalid YAML": (b"hosts: [web1\n", "inventory.yml: invalid YAML at line"),
    "python tag": (
        b'hosts: !!python/object/apply:os.system ["touch pwned"]\n',
        "could not determine a constructor",
    ),
    "non-UTF-8 file": (b"hosts:\n  web1: {deploy_path: /srv/caf\xe9}\n", "cannot read inventory"),
    "file larger than 1 MB": (b"#" * (MAX_INVENTORY_BYTES + 1), "larger than"),
}


def fab_list(tmp_path: Path, data: bytes) -> subprocess.CompletedProcess:
    (tmp_path / "fabfile.py").write_text(FABFILE)
    (tmp_path / NAME).write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k != "ATOMICDEPLOY_INVENTORY"}
    return subprocess.run(
        [sys.executable, "-m", "fabric", "--list"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def assert_usage_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr


@pytest.mark.parametrize("kind", list(FAB_CASES))
def test_fab_list_with_a_bad_inventory_is_one_line_and_exit_2(tmp_path, kind):
    data, expected = FAB_CASES[kind]
    with recorded(f"fab --list, {kind}"):
        proc = fab_list(tmp_path, data)
        assert_usage_error(proc, expected)
        assert not (tmp_path / "pwned").exists()


# --- bugs this file found, fixed: each test is the reproducer ------------------------------

# Plain YAML PyYAML resolves to a type, then fails to construct: ValueError, KeyError...
CONSTRUCTOR_CRASHES = {
    "impossible date": "application: 2024-02-30",  # ValueError: day is out of range for month
    "impossible month": "application: 2024-13-01",  # ValueError: month must be in 1..12
    "!!int tag on text": "port: !!int twenty-two",  # ValueError
    "!!int tag on _": "port: !!int _",  # IndexError
    "!!float tag on text": "port: !!float x",  # ValueError
    "!!bool tag on text": "forward_agent: !!bool maybe",  # KeyError
    "!!timestamp tag on text": "application: !!timestamp soon",  # AttributeError
    "!!map tag on a list": "labels: !!map [1]",  # TypeError
    "escape beyond unicode": 'application: "\\U00110000"',  # ValueError: chr() arg not in range
    "a 5000-digit number": "port: 1" + "0" * 5000,  # ValueError: exceeds the int digit limit
}


@pytest.mark.parametrize("kind", list(CONSTRUCTOR_CRASHES))
def test_values_pyyaml_cannot_construct(kind):
    value = CONSTRUCTOR_CRASHES[kind]
    check_text(kind, f"hosts:\n  web1:\n    deploy_path: /srv/app\n    {value}\n")


@pytest.mark.parametrize(
    "value", ["exclude: &x [*x]", "hooks: &h {after_shared: [*h]}", "labels: &l {a: [*l]}"]
)
def test_recursive_aliases_in_values(value):
    check_text("recursive alias in a value", f"hosts:\n  web1:\n    deploy_path: /a\n    {value}\n")


PARSE_WITH_LIMITS = """
import resource, sys
from pathlib import Path
from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory import parse
text = open(sys.argv[1], encoding="utf-8").read()
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
try:
    parse(text, Path("inventory.yml"))
except ConfigError as exc:
    print("ConfigError:", exc)
else:
    print("Inventory")
"""


def parse_in_a_box(tmp_path: Path, text: str, budget: float = 3.0) -> str:
    """Parse in a child with 1 GB of address space and `budget` seconds: a bomb cannot take
    the test run down with it."""
    (tmp_path / NAME).write_text(text)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PARSE_WITH_LIMITS, str(tmp_path / NAME)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=budget,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"parse still running after {budget}s") from None
    assert proc.returncode == 0, proc.stderr[-500:]
    assert time.monotonic() - started < budget
    assert proc.stdout.strip(), proc.stdout
    return proc.stdout.strip()


def test_the_top_level_alias_bomb_is_refused_fast(tmp_path):
    with recorded("billion laughs alias bomb (top level, 1 GB / 3 s box)"):
        got = parse_in_a_box(tmp_path, alias_bomb()).splitlines()
        assert got[0] == (
            "ConfigError: inventory.yml: unknown top-level key 'a0' (valid: config, hosts)"
        )
        assert got[-1] == "inventory.yml: 'hosts:' must be a map with at least one host"


@pytest.mark.parametrize("key", ["exclude", "labels"])
def test_an_alias_bomb_inside_a_host_finishes_fast(tmp_path, key):
    with recorded("billion laughs alias bomb (in a host key)"):
        text = nested_alias_bomb(key)
        if key == "labels":
            text = text.replace("labels: [", "labels: {x: [").rstrip("\n") + "}\n"
        got = parse_in_a_box(tmp_path, text)
        assert got.startswith(("ConfigError: inventory.yml: ", "Inventory"))


def test_a_ref_expansion_bomb_finishes_fast(tmp_path):
    with recorded("{{ref}} expansion bomb"):
        n = 1000
        text = (
            "hosts:\n  web1:\n    deploy_path: /srv/app\n    composer: xxxxxxxxxx\n"
            f'    source: "{"{{composer}}" * n}"\n'
            f'    application: "{"{{source}}" * n}"\n'
            f'    composer_options: "{"{{application}}" * n}"\n'
        )
        got = parse_in_a_box(tmp_path, text)
        assert got.startswith(("ConfigError: inventory.yml: ", "Inventory"))


@pytest.mark.parametrize("kind", ["impossible date", "recursive alias"])
def test_fab_list_with_an_inventory_parse_crashes_on(tmp_path, kind):
    value = "application: 2024-02-30" if kind == "impossible date" else "exclude: &x [*x]"
    with recorded(f"fab --list, {kind}"):
        proc = fab_list(tmp_path, f"hosts:\n  web1:\n    deploy_path: /a\n    {value}\n".encode())
        assert_usage_error(proc, "inventory.yml")
