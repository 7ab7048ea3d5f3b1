"""nginx, php-fpm and HTTP: the include, FastCGI requests, opcache resets, health checks."""

from __future__ import annotations

import re
import shlex

from ..secrets import redact_url_passwords
from .core import NOTE_MARKER, OPCACHE_OK, WARN_MARKER, say

q = shlex.quote


# Characters nginx takes literally in an unquoted `set` value (no spaces, `$`, `;`, quotes).
NGINX_SAFE_PATH = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-+@%:,=~"
)


# The only statement the generated include may hold: `set $name value;`, one per line,
# the value a plain token. root's nginx parses this file, which the deploy user writes:
# an `include`, `access_log`, `ssl_certificate` or `load_module` line would make root's
# nginx open a path of the deploy user's choosing (and `nginx -t` prints what it read).
_NGINX_SET = re.compile(
    r"[ \t]*set[ \t]+\$[A-Za-z_][A-Za-z0-9_]*[ \t]+[^\s;'\"{}$#\\]+[ \t]*;[ \t]*"
)


def nginx_set_only(text: str) -> str | None:
    """Why `text` is not a `set`-only include (the first offending line), or None."""
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip(" \t")
        if stripped and not stripped.startswith("#") and not _NGINX_SET.fullmatch(line):
            return f"line {number} is not a single `set $name value;`: {line.strip()[:60]!r}"
    return None


def write_if_changed(path: str, content: str) -> str:
    """Write `path` atomically (temp file + mv) unless it already holds `content`.

    The previous file is kept as `<path>.prev` so a failed `nginx -t` can put it back.
    Prints `changed` or `unchanged`.
    """
    tmp, prev = f"{path}.tmp", f"{path}.prev"
    # `$(cat)` drops trailing newlines: compare, and write, the content without them.
    content = content.rstrip("\n")
    return (
        f'if [ -f {q(path)} ] && [ "$(cat -- {q(path)})" = {q(content)} ]; then echo unchanged;'
        f" else printf '%s\\n' {q(content)} > {q(tmp)}"
        f" && {{ [ ! -e {q(path)} ] || cp -p -- {q(path)} {q(prev)}; }}"
        f" && mv -f -- {q(tmp)} {q(path)} && echo changed; fi"
    )


def restore_previous(path: str) -> str:
    prev = f"{path}.prev"
    return f"if [ -e {q(prev)} ]; then mv -f -- {q(prev)} {q(path)}; else rm -f -- {q(path)}; fi"


def nginx_check(public_path: str, root_file: str, content: str, test: str) -> str:
    """Prepare phase: the public dir exists and `nginx -t` accepts the new include.

    nginx only reads the include on reload, so it is written, tested and put back
    at once: nothing is served from it yet. (`nginx -t` alone accepts a root that
    does not exist, hence the `test -d`.)
    """
    return (
        f"test -d {q(public_path)} || {{ {say('public directory missing: ' + public_path)} >&2;"
        f" exit 1; }}; state=$({write_if_changed(root_file, content)}) || exit 1;"
        f' if [ "$state" = changed ]; then out=$( ({test}) </dev/null 2>&1); rc=$?;'
        f" {restore_previous(root_file)};"
        f" if [ $rc != 0 ]; then printf '%s\\n' \"$out\" | tail -n 3 >&2;"
        f" echo 'nginx test failed with the new include' >&2; exit $rc; fi; fi"
    )


def nginx_reload_and_wait(reload: str, pid_file: str, timeout: int) -> str:
    """Reload nginx and return only when its old workers have exited.

    `nginx -s reload` returns before the old workers stop serving the old root
    (keep-alive connections included). The deploy user cannot signal www-data's
    workers, but can read /proc: note the master's children before the reload,
    then wait until none of them is still its child. A timeout is a warning.
    """
    warn = q(f"{WARN_MARKER}old nginx workers still running {timeout}s after the reload")
    return (
        f"master=$(cat -- {q(pid_file)} 2>/dev/null);"
        " old=''; if [ -n \"$master\" ]; then"
        " old=$(cat /proc/$master/task/$master/children 2>/dev/null); fi;"
        f" ({reload}) </dev/null || exit $?;"
        ' if [ -z "$master" ]; then'
        f" {say(WARN_MARKER + 'nginx pid file ' + pid_file + ' not readable: not waiting')};"
        f" else deadline=$(( $(date +%s) + {int(timeout)} ));"
        " for p in $old; do"
        ' while [ "$(cut -d\' \' -f4 /proc/$p/stat 2>/dev/null)" = "$master" ]; do'
        f" if [ $(date +%s) -ge $deadline ]; then echo {warn}; break 2; fi; sleep 0.05;"
        " done; done; fi"
    )


def _fcgi_env(socket: str, script: str, uri: str, document_root: str) -> str:
    path, _, query = uri.partition("?")
    env = {
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
    pairs = " ".join(q(f"{k}={v}") for k, v in env.items())
    return f'env -i PATH="$PATH" {pairs} cgi-fcgi -bind -connect {q(socket)}'


def fcgi_status(socket: str, script: str, uri: str, document_root: str) -> str:
    """One FastCGI request to php-fpm (as cachetool makes); fail unless the status is 2xx."""
    what = q(f"warm-up {uri}")
    return (
        f"out=$({_fcgi_env(socket, script, uri, document_root)} </dev/null 2>&1)"
        f' || {{ echo {what}": cannot reach php-fpm at "{q(socket)} >&2; exit 1; }};'
        " status=$(printf '%s\\n' \"$out\" | tr -d '\\r' | awk '/^$/{exit} /^Status:/{print $2; exit}');"  # noqa: E501
        ' case "${status:-200}" in 2??) ;;'
        f' *) echo {what}" answered $status" >&2; exit 1;; esac'
    )


def opcache_reset_php(reset_above: int) -> str:
    """The script the `fcgi` strategy runs in php-fpm: reset the opcache only when more than
    `reset_above` percent of its memory or of its script slots is in use (0: always), and
    when it cannot tell (opcache_get_status disabled). It prints what it did. The interned
    strings buffer is left out: PHP's own strings fill a quarter of the default 8 MB, and
    a full one makes opcache keep strings with each script instead, not stop caching.

    Each `opcache_reset()` under load risks a php-fpm worker that dies mid-request
    ("zend_mm_heap corrupted", a 502: php-src GH-8739, GH-14471); with absolute release
    paths a reset is only needed to make room, so one is made only when room runs short,
    before opcache fills (a full opcache stops caching the new release's scripts)."""
    failed = "echo 'opcache_reset() failed or opcache is off'; return;"
    return (
        "<?php $s = function_exists('opcache_get_status') ? opcache_get_status(false) : null;"
        f" if ($s === false) {{ {failed} }}"
        " $m = $s['memory_usage'] ?? null; $k = $s['opcache_statistics'] ?? null;"
        " $used = null;"
        " if ($m && $k) { $used = max(100 * ($m['used_memory'] + $m['wasted_memory'])"
        " / max(1, $m['used_memory'] + $m['wasted_memory'] + $m['free_memory']),"
        " 100 * $k['num_cached_keys'] / max(1, $k['max_cached_keys'])); }"
        f" $reset = $used === null || $used > {int(reset_above)};"
        f" if ($reset && !opcache_reset()) {{ {failed} }}"
        f" echo '{OPCACHE_OK}', $reset ? ' reset' : ' kept',"
        " $used === null ? ' (its use is unknown)' : ' at ' . round($used, 1) . '% in use';"
    )


def opcache_reset(
    strategy: str,
    *,
    socket: str = "",
    dep_dir: str = "",
    token: str = "",
    cachetool: str = "",
    url: str = "",
    reload: str = "",
    reset_above: int = 0,
) -> str | None:
    """Clear php-fpm's opcache; a failure prints a warning marker (the release is live)."""
    if strategy == "none":
        return None
    if strategy == "fcgi":
        script = f"{dep_dir}/opcache-reset-{token}.php"
        php = opcache_reset_php(reset_above)
        work = (
            f"out=; printf '%s\\n' {q(php)} > {q(script)} && chmod 644 -- {q(script)}"
            f" && out=$({_fcgi_env(socket, script, '/', dep_dir)} </dev/null 2>&1);"
            f" rm -f -- {q(script)} 2>/dev/null;"
            f' case "$out" in *{OPCACHE_OK}*) printf \'%s\' "${{out##*{OPCACHE_OK}}}";;'
            " *) printf '%s\\n' \"$out\" | tr -d '\\r' | tail -n 1; exit 1;; esac"
        )
    elif strategy == "cachetool":
        work = f"out=$({cachetool} opcache:reset {q('--fcgi=' + socket)} </dev/null 2>&1) || {{ printf '%s\\n' \"$out\" | tail -n 1; exit 1; }}"  # noqa: E501
    elif strategy == "http":
        work = f"out=$({curl_url(url)} | curl -fsS --max-time 10 -K - 2>&1) || {{ printf '%s\\n' \"$out\" | tail -n 1; exit 1; }}"  # noqa: E501
    elif strategy == "fpm-reload":
        work = f"out=$( ({reload}) </dev/null 2>&1) || {{ printf '%s\\n' \"$out\" | tail -n 1; exit 1; }}"  # noqa: E501
    else:
        raise ValueError(f"unknown opcache strategy {strategy!r}")
    warn = q(f"{WARN_MARKER}opcache reset ({strategy}) failed: ")
    note = q(f"{NOTE_MARKER}opcache")
    # What `fcgi` decided (" kept at 12.3% in use") becomes a line of the host's report;
    # a failure, a warning.
    return (
        f"if msg=$( ( {work} ) 2>&1 ); then"
        f' if [ -n "$msg" ]; then printf \'%s\\n\' {note}"$(printf \'%s\' "$msg" | tail -n 1)";'
        " fi;"
        f' else echo {warn}"$(printf \'%s\' "$msg" | tail -n 1)"; fi'
    )


def health_check(url: str, status: int, contains: str, timeout: int) -> str:
    """Request `url` on the host; fail unless the status is right and `contains` appears
    in the response (headers or body: `curl -i`)."""
    check_body = (
        f" printf '%s' \"$out\" | grep -qF -- {q(contains)} ||"
        f" {{ {say('health check: the response lacks ' + repr(contains))} >&2; exit 1; }};"
        if contains
        else ""
    )
    return (
        f"out=$({curl_url(url)} | curl -sS -i --max-time {int(timeout)} -w '\\n%{{http_code}}'"
        " -K - 2>&1)"
        f' || {{ echo "health check: $(printf \'%s\' "$out" | tail -n 1)" >&2; exit 1; }};'
        " code=$(printf '%s\\n' \"$out\" | tail -n 1);"
        f" [ \"$code\" = {int(status)} ] || {{ printf '%s answered %s, expected %s\\n'"
        f' {q("health check: " + redact_url_passwords(url))} "$code" {int(status)} >&2;'
        f" exit 1; }};{check_body}"
    )


def curl_url(url: str) -> str:
    """Print a curl config line naming `url`, for `curl -K -` to read from its stdin.

    A URL on curl's command line, password included, is readable by every user of the
    host in `ps`; `printf` is a shell builtin, so this line starts no process at all.
    """
    if any(c in url for c in "\r\n\0"):
        raise ValueError("a URL must not contain line breaks or NUL")
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    line = 'url = "' + escaped + '"'
    return f"printf '%s\\n' {q(line)}"
