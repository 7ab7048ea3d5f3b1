"""writable: let the web server write to writable_dirs (chmod, acl, chown, chgrp, sticky or
skip).

Runs after `shared`, so a writable dir below a shared dir is changed in `shared/`,
where the web server's files live, never through a link it could have planted.
"""

from __future__ import annotations

from .. import shell
from ..config import Config


def script(cfg: Config) -> str | None:
    host = cfg.host
    return shell.make_writable(
        cfg.layout,
        cfg.release,
        host.writable_dirs,
        host.writable_mode,
        shared_dirs=host.shared_dirs,
        chmod_mode=host.writable_chmod_mode,
        http_user=host.http_user,
        http_group=host.http_group,
        recursive=host.writable_recursive,
        use_sudo=host.writable_use_sudo,
    )
