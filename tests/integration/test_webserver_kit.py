"""The web-server test kit itself: real nginx + php-fpm started and stopped by PID.

These tests pin down the server behaviour the deploy tests rely on: an nginx reload
switches the document root carried by the `root_dir.nginx.conf` include, opcache is
really on for FPM requests, a plain `current` symlink swap serves stale code under
opcache with `validate_timestamps=0` (why atomicdeploy points nginx at absolute
release paths), and stop() leaves no daemon of ours behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from atomicdeploy.testing import hosts as kit
from tests.kit import web as webkit
from tests.kit.web import WebHost, WebHosts, children

pytestmark = pytest.mark.integration

INDEX_PHP = """<?php
header('Content-Type: text/plain');
usleep((int) ($_GET['sleep_ms'] ?? 0) * 1000);
echo "{version}\\n", realpath(__FILE__), "\\n", getmypid(), "\\n";
"""


def php_file(path: Path, code: str) -> Path:
    """Write a PHP file with an mtime a minute ago.

    opcache.file_update_protection (2 s by default) makes opcache compile, but not cache,
    a file changed less than 2 s before the request; a fresh file would never be cached
    here and opcache would look off. Real deploys meet the same 2 s window.
    """
    path.write_text(code)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def release(deploy_path: Path, version: str) -> Path:
    """releases/<version>/public/index.php printing its version, real path and worker pid."""
    public = deploy_path / "releases" / version / "public"
    public.mkdir(parents=True)
    php_file(public / "index.php", INDEX_PHP.format(version=version))
    return public


def get(url: str) -> tuple[int, str]:
    # urllib sends `Connection: close`, so no keep-alive connection pins an old nginx worker.
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll `check`; return the seconds it took, fail the test on timeout."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


def serves(web: WebHost, version: str) -> bool:
    """True once GET / answers `version`; a 502 counts as not yet.

    With php-fpm's default process_control_timeout = 0, USR2 kills the old workers at once,
    so a request one of them had already accepted is reset (nginx: 502, "recv() failed
    (104: Connection reset by peer)"). Measured here: 11 of 282 requests failed across five
    reloads under six concurrent clients; none with process_control_timeout = 10s.
    """
    try:
        return get(web.url("/"))[1].startswith(version)
    except urllib.error.HTTPError as e:
        if e.code != 502:
            raise
        return False


def alive(pid: int) -> bool:
    """True if `pid` is a live process; a zombie no one reaped yet is not running."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def mentioning(text: str) -> set[int]:
    """Live processes whose command line contains `text` (the masters name their config)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes() and alive(int(cmdline.parent.name)):
                found.add(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def swap_current(deploy_path: Path, version: str) -> None:
    """Atomic symlink swap, as a naive deploy does it: ln -sfn to a temp name, mv -T."""
    subprocess.run(
        f"cd {deploy_path} && ln -sfn releases/{version} current.tmp && mv -T current.tmp current",
        shell=True,
        check=True,
    )


@pytest.fixture
def web_factory(tmp_path: Path) -> Iterator[Callable[[str], WebHost]]:
    started: list[WebHost] = []

    def make(mode: str) -> WebHost:
        host = WebHost(
            name=mode, base=tmp_path / "web", deploy_path=tmp_path / "app", port=0, mode=mode
        )
        started.append(host)
        return host

    yield make
    for host in started:
        host.stop()


def test_include_mode_reload_switches_release_and_opcache_is_on(web_factory, tmp_path):
    web = web_factory("include")
    deploy = web.deploy_path
    r1 = release(deploy, "r1")
    web.root_file.write_text(f"set $root_dir {r1};\n")
    web.start()

    code, body = get(web.url("/"))
    assert code == 200
    assert body.split()[:2] == ["r1", str(r1 / "index.php")]
    # try_files falls back to /index.php for any path, keeping the query string.
    assert get(web.url("/some/route?x=1"))[1].startswith("r1")

    # A deploy: new release at a new absolute path, rewrite the include, test, reload.
    r2 = release(deploy, "r2")
    web.root_file.write_text(f"set $root_dir {r2};\n")
    subprocess.run(web.nginx_test_command(), shell=True, check=True)
    old_workers = web.nginx_worker_pids()
    assert len(old_workers) == 2
    subprocess.run(web.nginx_reload_command(), shell=True, check=True)
    took = wait_until(lambda: not (old_workers & web.nginx_worker_pids()))
    print(f"old nginx workers gone {took:.3f}s after reload")
    new_workers = web.nginx_worker_pids()
    assert len(new_workers) == 2 and not (new_workers & old_workers)

    code, body = get(web.url("/"))
    assert code == 200
    assert body.split()[:2] == ["r2", str(r2 / "index.php")]

    # opcache is really on for FPM requests (the CLI has it off, so ask php-fpm itself).
    probe = php_file(
        tmp_path / "opcache-probe.php",
        "<?php var_export(opcache_get_status(false)['opcache_enabled']);",
    )
    code, headers, body = web.fcgi(str(probe))
    assert code == 200, body
    assert body.strip() == "true"
    assert headers["content-type"].startswith("text/html")
    # ...and it cached the release scripts nginx sent, under their absolute paths.
    scripts = php_file(
        tmp_path / "opcache-scripts.php",
        "<?php echo implode(' ', array_keys(opcache_get_status()['scripts']));",
    )
    cached = set(web.fcgi(str(scripts))[2].split())
    assert {str(r1 / "index.php"), str(r2 / "index.php")} <= cached


def answers_from_every_worker(web: WebHost, path: str = "/") -> list[list[str]]:
    """GET `path` until every php-fpm worker answered: concurrent slow requests, one each."""
    answers: list[list[str]] = []
    for _ in range(5):
        with ThreadPoolExecutor(web.fpm_children) as pool:
            bodies = pool.map(
                lambda _: get(web.url(f"{path}?sleep_ms=200"))[1], range(web.fpm_children)
            )
            answers += [b.split() for b in bodies]
        if len({a[2] for a in answers}) == web.fpm_children:
            return answers
    pytest.fail(f"not every php-fpm worker answered: {answers}")


def test_current_mode_serves_stale_code_after_symlink_swap(web_factory):
    web = web_factory("current")
    deploy = web.deploy_path
    old_file = release(deploy, "r1") / "index.php"
    new_file = release(deploy, "r2") / "index.php"
    swap_current(deploy, "r1")
    web.start()
    first = get(web.url("/"))[1].split()
    assert first[:2] == ["r1", str(old_file)]

    swap_current(deploy, "r2")
    assert (deploy / "current").resolve() == deploy / "releases" / "r2"
    # nginx sends the same SCRIPT_FILENAME (…/current/public/index.php); with
    # revalidate_path=0 opcache finds it under that key, bound to the r1 script the first
    # request compiled, and validate_timestamps=0 never looks at the disk again. opcache is
    # shared: the workers that never served r1 serve it too, although the disk says r2.
    answers = answers_from_every_worker(web)
    assert {(a[0], a[1]) for a in answers} == {("r1", str(old_file))}, answers

    # A graceful php-fpm reload (USR2: the master re-executes itself, opcache starts empty,
    # the socket is inherited) replaces every worker; all of them now serve r2.
    old_workers = {a[2] for a in answers}
    subprocess.run(web.fpm_reload_command(), shell=True, check=True)
    wait_until(lambda: serves(web, "r2"))
    answers = answers_from_every_worker(web)
    assert {(a[0], a[1]) for a in answers} == {("r2", str(new_file))}, answers
    assert not {a[2] for a in answers} & old_workers


def test_realpath_mode_follows_symlink_swap(web_factory):
    web = web_factory("realpath")
    deploy = web.deploy_path
    release(deploy, "r1")
    release(deploy, "r2")
    swap_current(deploy, "r1")
    web.start()
    assert get(web.url("/"))[1].split()[0] == "r1"

    swap_current(deploy, "r2")
    # $realpath_root resolves the symlink per request: a new path, so a new opcache entry.
    bodies = {get(web.url("/"))[1] for _ in range(12)}
    assert {b.split()[0] for b in bodies} == {"r2"}, bodies


def test_stop_leaves_no_process_behind(web_factory):
    web = web_factory("include")
    release(web.deploy_path, "r1")
    web.root_file.write_text(f"set $root_dir {web.deploy_path / 'releases' / 'r1' / 'public'};\n")
    web.start()
    assert get(web.url("/"))[0] == 200

    nginx_master = int(web.nginx_pid_file.read_text())
    fpm_master = int(web.fpm_pid_file.read_text())
    nginx_workers = web.nginx_worker_pids()
    fpm_workers = children(fpm_master)
    assert len(nginx_workers) == 2
    assert len(fpm_workers) == web.fpm_children
    ours = {nginx_master, fpm_master} | nginx_workers | fpm_workers
    assert {nginx_master, fpm_master} <= mentioning(str(web.base))
    assert all(alive(pid) for pid in ours)

    web.stop()
    wait_until(lambda: not any(alive(pid) for pid in ours))
    assert not mentioning(str(web.base)), "a process still names our config"
    assert web.nginx_worker_pids() == set()
    with pytest.raises(OSError):
        get(web.url("/"))
    web.stop()  # idempotent
    assert not os.path.exists(web.fpm_socket) or not _connects(web.fpm_socket)


def _connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def test_a_web_host_whose_chosen_port_was_taken_meanwhile_moves_to_another(
    tmp_path, monkeypatch, taken_port
):
    monkeypatch.setattr(webkit, "free_ports", lambda count: [taken_port] * count)
    with WebHosts(tmp_path / "web", [tmp_path / "app"]) as webs:
        web = webs[0]
        assert web.port != taken_port
        assert kit.pid_in(web.nginx_pid_file) in web.pids  # our nginx holds the new port
        socket.create_connection(("127.0.0.1", web.port), timeout=5).close()
    with (
        pytest.raises(kit.PortTaken),
        WebHosts(tmp_path / "fixed", [tmp_path / "app2"], ports=[taken_port]),
    ):
        pass  # a port the caller gave is never changed behind its back
