"""The remote paths of one deploy_path. Pure: computes strings, touches nothing.

Keeping every path in one place means a hostile release name or shared path is
refused once, here, instead of being trusted by each step.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .errors import ConfigError

RELEASES = "releases"
SHARED = "shared"
CURRENT = "current"
DEP = ".dep"


def check_relative_path(path: str, what: str) -> str:
    """Return `path` normalised, or refuse one that could escape its parent.

    Shared and writable paths are joined under a release directory; an absolute
    path or a `..` component would point the later `rm -rf` somewhere else.
    """
    if not isinstance(path, str) or not path.strip("/"):
        raise ConfigError(f"{what} {path!r} is empty")
    if path.startswith("/"):
        raise ConfigError(f"{what} {path!r} must be relative to the release, not absolute")
    if "\0" in path or "\n" in path:
        raise ConfigError(f"{what} {path!r} contains a NUL or newline character")
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ConfigError(f"{what} {path!r} must not contain '..'")
    if any(p.startswith("-") for p in parts):
        raise ConfigError(f"{what} {path!r} must not have a part starting with '-'")
    return "/".join(parts)


def check_release_name(name: str) -> str:
    """A release name is one path component: no `/`, no `..`, no leading dash."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\0" in name
        or "\n" in name
        or name.startswith("-")
    ):
        raise ConfigError(f"release name {name!r} is not a plain directory name")
    return name


def is_release_name(name: str) -> bool:
    """Whether `check_release_name` accepts `name`."""
    try:
        check_release_name(name)
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class Layout:
    """Every remote path atomicdeploy uses under one `deploy_path`."""

    deploy_path: str

    @property
    def releases(self) -> str:
        return posixpath.join(self.deploy_path, RELEASES)

    @property
    def shared(self) -> str:
        return posixpath.join(self.deploy_path, SHARED)

    @property
    def current(self) -> str:
        return posixpath.join(self.deploy_path, CURRENT)

    @property
    def current_tmp(self) -> str:
        """The temporary link renamed over `current`; same directory, so rename(2) is atomic."""
        return posixpath.join(self.deploy_path, ".current.tmp")

    @property
    def dep(self) -> str:
        return posixpath.join(self.deploy_path, DEP)

    @property
    def lock(self) -> str:
        return posixpath.join(self.dep, "deploy.lock")

    @property
    def lock_info(self) -> str:
        return posixpath.join(self.lock, "owner")

    @property
    def log(self) -> str:
        return posixpath.join(self.dep, "releases.log")

    @property
    def upload_cache(self) -> str:
        """The last uploaded source, never served: rsync updates it, releases copy it."""
        return posixpath.join(self.dep, "upload")

    def release(self, name: str) -> str:
        return posixpath.join(self.releases, check_release_name(name))

    def current_target(self, name: str) -> str:
        """What `current` points to: relative, so the tree survives a chroot or a move."""
        return posixpath.join(RELEASES, check_release_name(name))

    def release_item(self, name: str, item: str) -> str:
        return posixpath.join(self.release(name), check_relative_path(item, "path"))

    def shared_item(self, item: str) -> str:
        return posixpath.join(self.shared, check_relative_path(item, "shared path"))

    def shared_link_target(self, item: str) -> str:
        """Relative target of the link `releases/<name>/<item>` -> `shared/<item>`.

        Computed here rather than with `ln --relative`, whose results differ between
        coreutils versions (a Deployer known bug).
        """
        item = check_relative_path(item, "shared path")
        depth = item.count("/") + 2  # the item's parent dirs, plus <name>/ and releases/
        return posixpath.join(*([".."] * depth), SHARED, item)
