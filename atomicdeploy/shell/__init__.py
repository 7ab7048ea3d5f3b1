"""The only emitter of shell text. Pure: every function returns a string or an argv.

Every value goes through `shlex.quote`/`shlex.join`; nothing else in atomicdeploy builds
shell. One module per job: `core` (quoting, markers, sequences, the fixed command line a
script travels behind), `state` (directories, lock, releases log), `tree` (releases, shared
links, writable dirs), `golive` (the one swap primitive and go-live), `rsync` (the upload),
`web` (nginx, FastCGI, opcache, health), `user` (hook commands). This package re-exports
them all: callers write `shell.go_live(...)`.
"""

from __future__ import annotations

from .core import (  # noqa: F401
    ARMED_MARKER,
    CURRENT_IS_DIR,
    LOCK_HELD,
    NEXT_MARKER,
    NGINX_MARKER,
    NOTE_MARKER,
    OPCACHE_OK,
    REFUSED,
    SHARED_MISSING,
    START_MARKER,
    STATE_MARKERS,
    STEP_MARKER,
    SWITCHED_MARKER,
    WARN_MARKER,
    all_of,
    each_or_exit,
    remote,
    say,
    script_payload,
    sequence,
    started,
    then_next,
)
from .golive import (  # noqa: F401
    go_live,
    swap,
    switch,
    switch_back,
    switch_link,
    switch_rename,
    wait_for_go,
)
from .rsync import (  # noqa: F401
    TUNNEL_ENV,
    rsync_argv,
    rsync_exact_times,
    server_command,
    tunnel_rsh,
    tunnel_script,
)
from .state import (  # noqa: F401
    LOG_COMPACT_AT,
    LOG_TAIL,
    append_log,
    compact_log,
    force_unlock,
    lock,
    read_state,
    read_status,
    setup,
    then_unlock,
    unlock_own,
)
from .tree import (  # noqa: F401
    create_release,
    fill_release,
    link_shared_dir,
    link_shared_file,
    make_writable,
    remove_release,
    remove_releases,
    sync_release,
)
from .user import (  # noqa: F401
    hook,
    in_current,
    login_shell,
)
from .web import (  # noqa: F401
    NGINX_SAFE_PATH,
    curl_url,
    fcgi_status,
    health_check,
    nginx_check,
    nginx_reload_and_wait,
    nginx_set_only,
    opcache_reset,
    opcache_reset_php,
    restore_previous,
    write_if_changed,
)
