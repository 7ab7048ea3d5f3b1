"""nginx: serve each release from its absolute path through a generated include.

php-fpm and opcache key scripts by path. Behind a `current` symlink the path never
changes, so old code keeps being served after the swap; with the release's absolute
path in `set $root_dir ...;` every release has its own keys, and nginx's graceful
reload hands new requests to new workers while old ones finish.
"""

from __future__ import annotations

import posixpath

from .. import shell
from ..config import Config
from ..errors import ConfigError


def public_path(cfg: Config, release: str) -> str:
    """The directory nginx serves: `public_dir` of the release, or the release itself
    (`public_dir: "."`, for apps with index.php at the top of their tree)."""
    assert cfg.host.nginx is not None
    base, public = cfg.layout.release(release), cfg.host.nginx.public_dir
    return posixpath.join(base, public) if public else base


def include_text(cfg: Config, release: str) -> str:
    nginx = cfg.host.nginx
    assert nginx is not None
    path = public_path(cfg, release)
    if not set(path) <= shell.NGINX_SAFE_PATH:
        raise ConfigError(
            f"{path!r} has characters nginx would not take literally",
            host=cfg.host.name,
            step="nginx",
        )
    text = nginx.template.format(
        public_path=path, release_path=cfg.layout.release(release), release=release
    )
    refused = shell.nginx_set_only(text)  # the template was checked; the paths are new
    if refused:
        raise ConfigError(f"nginx include: {refused}", host=cfg.host.name, step="nginx")
    return text


def check_script(cfg: Config) -> str | None:
    """Prepare phase: the public dir exists and nginx accepts the include (then put back)."""
    nginx = cfg.host.nginx
    if nginx is None:
        return None
    return shell.nginx_check(
        public_path(cfg, cfg.release), nginx.root_file, include_text(cfg, cfg.release), nginx.test
    )


def go_live_parts(cfg: Config, release: str) -> tuple[str, str, str, str] | None:
    nginx = cfg.host.nginx
    if nginx is None:
        return None
    reload = shell.nginx_reload_and_wait(nginx.reload, nginx.pid_file, nginx.reload_timeout)
    return nginx.root_file, include_text(cfg, release), nginx.test, reload
