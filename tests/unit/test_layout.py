"""layout: every remote path, and the refusal of names and paths that could escape."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomicdeploy.errors import EXIT_USAGE, ConfigError
from atomicdeploy.layout import Layout, check_relative_path, check_release_name

APP = Layout("/srv/app")


# --- check_relative_path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("storage", "storage"),
        ("storage/", "storage"),
        ("a/b", "a/b"),
        ("a//b", "a/b"),
        ("./a/./b/", "a/b"),
        ("bootstrap/cache", "bootstrap/cache"),
        (".env", ".env"),
        ("...", "..."),
        ("..a/b..", "..a/b.."),
        ("my dir/it's $(x)", "my dir/it's $(x)"),
        ("ünï/☃", "ünï/☃"),
    ],
)
def test_check_relative_path_accepts(path, clean):
    assert check_relative_path(path, "shared path") == clean


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("/", "empty"),
        ("///", "empty"),
        ("/etc", "absolute"),
        ("/srv/app/shared", "absolute"),
        ("..", "'..'"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("a/..", "'..'"),
        ("a/b/../../..", "'..'"),
        ("a\0b", "NUL or newline"),
        ("a\nb", "NUL or newline"),
        ("storage\n", "NUL or newline"),
        (".", "shared path"),
        ("./", "shared path"),
        ("-rf", "starting with '-'"),
        ("storage/--help", "starting with '-'"),
    ],
)
def test_check_relative_path_refuses(path, reason):
    with pytest.raises(ConfigError, match=reason) as info:
        check_relative_path(path, "shared path")
    assert info.value.exit_code == EXIT_USAGE
    assert "shared path" in str(info.value)
    assert "\n" not in str(info.value)


def test_check_relative_path_refuses_non_strings():
    for value in (None, 3, ["a"]):
        with pytest.raises(ConfigError):
            check_relative_path(value, "path")  # type: ignore[arg-type]


# --- check_release_name -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["20260101T000000Z", "20260101T000000Z.01", "R1", "a b", "it's", "$(x)", "ü", "..."]
)
def test_check_release_name_accepts(name):
    assert check_release_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "/", "a/b", "../x", "/abs", "-rf", "--", "-", "a\0b", "a\nb", "R1\n"]
)
def test_check_release_name_refuses(name):
    with pytest.raises(ConfigError, match="not a plain directory name") as info:
        check_release_name(name)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)


def test_check_release_name_refuses_non_strings():
    for value in (None, 1, b"R1"):
        with pytest.raises(ConfigError):
            check_release_name(value)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from("ab./-\0\n $'"), max_size=8))
def test_check_release_name_is_one_safe_component(name):
    try:
        assert check_release_name(name) == name
    except ConfigError:
        return
    assert "/" not in name and name not in (".", "..") and not name.startswith("-")
    assert posixpath.dirname(APP.release(name)) == APP.releases


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from("ab./-\0\n $'"), max_size=10))
def test_check_relative_path_stays_inside(path):
    try:
        clean = check_relative_path(path, "path")
    except ConfigError:
        return
    joined = posixpath.normpath(posixpath.join("/base", clean))
    assert joined.startswith("/base/")
    assert check_relative_path(clean, "path") == clean  # already normal
    assert ".." not in clean.split("/") and "" not in clean.split("/")


# --- Layout -----------------------------------------------------------------------------------


def test_layout_paths():
    assert APP.releases == "/srv/app/releases"
    assert APP.shared == "/srv/app/shared"
    assert APP.current == "/srv/app/current"
    assert APP.current_tmp == "/srv/app/.current.tmp"
    assert APP.dep == "/srv/app/.dep"
    assert APP.lock == "/srv/app/.dep/deploy.lock"
    assert APP.lock_info == "/srv/app/.dep/deploy.lock/owner"
    assert APP.log == "/srv/app/.dep/releases.log"
    assert APP.release("R1") == "/srv/app/releases/R1"
    assert APP.release_item("R1", "a//b/") == "/srv/app/releases/R1/a/b"
    assert APP.shared_item("./storage") == "/srv/app/shared/storage"


def test_current_tmp_is_beside_current():
    """rename(2) is only atomic within one directory."""
    lay = Layout("/srv/my app")
    assert posixpath.dirname(lay.current_tmp) == posixpath.dirname(lay.current)


def test_current_target_is_relative():
    assert APP.current_target("R1") == "releases/R1"
    target = APP.current_target("20260101T000000Z.01")
    assert not target.startswith("/")
    assert posixpath.normpath(posixpath.join(APP.deploy_path, target)) == APP.release(
        "20260101T000000Z.01"
    )
    with pytest.raises(ConfigError):
        APP.current_target("../R1")


@pytest.mark.parametrize(
    ("item", "target"),
    [
        ("storage", "../../shared/storage"),
        ("storage/", "../../shared/storage"),
        (".env", "../../shared/.env"),
        ("a/b", "../../../shared/a/b"),
        ("a//b", "../../../shared/a/b"),
        ("a/b/c/d", "../../../../../shared/a/b/c/d"),
    ],
)
def test_shared_link_target_depth(item, target):
    assert APP.shared_link_target(item) == target
    # Resolved from the directory holding the link, it lands on the shared item.
    link_dir = posixpath.dirname(APP.release_item("R1", item))
    resolved = posixpath.normpath(posixpath.join(link_dir, target))
    assert resolved == APP.shared_item(item)


def test_paths_refuse_hostile_input():
    for bad in ("../x", "/etc/passwd", ""):
        with pytest.raises(ConfigError):
            APP.shared_item(bad)
        with pytest.raises(ConfigError):
            APP.release_item("R1", bad)
        with pytest.raises(ConfigError):
            APP.shared_link_target(bad)
    for bad in ("..", "-x", "a/b"):
        with pytest.raises(ConfigError):
            APP.release(bad)
