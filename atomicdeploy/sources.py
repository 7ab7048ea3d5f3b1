"""What a deploy uploads: a local directory, a commit of the local repository (`--revision`),
or a commit of `repository:` (fetched into the controller's mirror); built once with
`build:` when the inventory has build commands. Decided before any host is contacted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import gitsource, localbuild, repository
from .errors import ConfigError
from .inventory import HostConfig
from .secrets import redact_url_passwords


@dataclass(frozen=True)
class Tree:
    path: str  # the directory to upload
    revision: str = ""  # full commit id, when it came from git
    tag: str = ""  # the commit's version tag, for the release name


@dataclass(frozen=True)
class Choice:
    """The deploy task's options that choose the source."""

    source: str | None = None
    revision: str | None = None
    branch: str | None = None
    rebuild: bool = False


def _one(hosts: Sequence[HostConfig], what: str, get: Callable[[HostConfig], object]) -> object:
    values = list(dict.fromkeys(get(h) for h in hosts))
    if len(values) > 1:
        shown = [redact_url_passwords(str(v)) for v in values]
        raise ConfigError(f"hosts of one stage must share one {what}, found {shown}")
    return values[0]


@contextlib.contextmanager
def release_tree(
    hosts: Sequence[HostConfig],
    inventory_dir: Path,
    choice: Choice,
    resolve_source: Callable[[Sequence[HostConfig], Path, str | None], str],
    say: Callable[[str], None],
) -> Iterator[Tree]:
    """The tree to upload, built; temporary exports are removed afterwards."""
    url = str(_one(hosts, "repository", lambda h: h.repository))
    commands = tuple(_one(hosts, "build", lambda h: h.build))  # type: ignore[arg-type]
    if url:
        subdir = choice.source or str(_one(hosts, "source", lambda h: h.source))
        branch = choice.branch or str(_one(hosts, "branch", lambda h: h.branch))
        with repository.exported(url, branch, choice.revision or "", subdir, say) as found:
            commit, tree, tag = found
            key = localbuild.build_key(url, commit, subdir, commands)
            with localbuild.built(tree, commands, key, rebuild=choice.rebuild, say=say) as out:
                yield Tree(str(out), commit, tag)
        return
    if choice.branch:
        raise ConfigError(
            "--branch needs `repository:` in the inventory (for this repository: --revision)"
        )
    src = Path(resolve_source(hosts, inventory_dir, choice.source))
    if not choice.revision:
        with localbuild.built(src, commands, None, rebuild=True, say=say) as out:
            yield Tree(str(out))
        return
    with gitsource.exported(src, src, choice.revision) as (commit, tree):
        root = gitsource.repo_root(src)
        tag = gitsource.tag_of(root, commit) or ""
        key = localbuild.build_key(str(root), commit, str(src), commands)
        with localbuild.built(tree, commands, key, rebuild=choice.rebuild, say=say) as out:
            yield Tree(str(out), commit, tag)
