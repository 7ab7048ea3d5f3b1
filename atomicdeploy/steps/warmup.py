"""warmup: request paths through FastCGI on the new release before it goes live.

php-fpm compiles and caches the new release's scripts (and the framework builds its
caches) while traffic still goes to the old one; a non-2xx answer fails the deploy
before anything goes live.
"""

from __future__ import annotations

import posixpath

from .. import shell
from ..config import Config
from . import nginx


def script(cfg: Config) -> str | None:
    host = cfg.host
    if not host.warmup:
        return None
    if host.nginx:
        public = nginx.public_path(cfg, cfg.release)
    else:
        public = posixpath.join(cfg.layout.release(cfg.release), "public")
    parts = []
    for uri in host.warmup:
        path = uri.partition("?")[0]
        target = path if path.endswith(".php") else "/" + host.warmup_script
        script_file = posixpath.normpath(public + target)
        if not script_file.startswith(public + "/"):
            raise ValueError(f"warm-up path {uri!r} leaves the public directory")
        parts.append(shell.fcgi_status(host.opcache.socket, script_file, uri, public))
    return shell.all_of(parts)
