"""opcache: clear php-fpm's opcache after go-live, through its socket.

With absolute release paths the new release's scripts have new opcache keys, so
a reset is not needed for correctness; it frees the memory the old release's
scripts hold. The `fcgi` strategy resets only when that memory runs short
(`opcache.reset_above`), since a reset under load can crash a php-fpm worker.
docs/nginx-php-fpm.md gives the measured trade-off of each strategy.
"""

from __future__ import annotations

from .. import shell
from ..config import Config


def script(cfg: Config) -> str | None:
    oc = cfg.host.opcache
    return shell.opcache_reset(
        oc.strategy,
        socket=oc.socket,
        dep_dir=cfg.layout.dep,
        token=cfg.run.token,
        cachetool=oc.cachetool,
        url=oc.url,
        reload=oc.reload,
        reset_above=oc.reset_above,
    )
