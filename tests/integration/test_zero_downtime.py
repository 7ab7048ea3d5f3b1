"""Zero downtime, proven under load with real nginx and php-fpm (opcache on, no timestamp checks).

While keep-alive clients hammer every host, a deploy and a rollback cause no failed
request, no response that mixes the files of two versions (the example app's
Email/Notification pair), and no response started after the deploy returned that
shows the old version.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests import faults
from tests.kit.load import set_version
from tests.kit.web import WebHosts

from .conftest import Project, example_project, under_load

pytestmark = pytest.mark.integration

STATUS_PHP = """<?php
$s = opcache_get_status(true);
header('Content-Type: text/plain');
echo json_encode(['enabled' => $s['opcache_enabled'],
    'restarts' => $s['opcache_statistics']['manual_restarts'],
    'last_restart' => $s['opcache_statistics']['last_restart_time'],
    'start' => $s['opcache_statistics']['start_time'],
    'scripts' => array_keys($s['scripts'] ?? [])]);
"""


@pytest.fixture
def site(tmp_path, sshd_hosts):
    """Two sshd hosts, each with its own nginx + php-fpm serving its deploy path."""
    hosts = list(sshd_hosts)[:2]
    config = {
        "shared_dirs": ["storage"],
        "shared_files": [".env"],
        "writable_dirs": ["storage"],
        "keep_releases": 3,
    }
    project = example_project(tmp_path, hosts, config)
    paths = [project.deploy_path(h.name) for h in hosts]
    with WebHosts(tmp_path / "web", paths, names=[h.name for h in hosts]) as webs:
        for h, web in zip(hosts, webs, strict=True):
            project.overrides[h.name] = web.inventory_settings()
        project.webs = list(webs)
        yield project


def status(web, project: Project, host: str) -> dict:
    import json

    f = project.deploy_path(host) / "shared" / "opcache-status.php"
    f.write_text(STATUS_PHP)
    code, _, body = web.fcgi(str(f))
    assert code == 200, body
    return json.loads(body)


def pages(project) -> list[str]:
    import urllib.request

    return [
        urllib.request.urlopen(w.url("/"), timeout=5).read().decode().strip() for w in project.webs
    ]


def test_deploy_and_rollback_under_load_fail_nothing_mix_nothing_serve_nothing_stale(site):
    site.ok("test", "deploy")
    assert pages(site) == ["version 1 (email v1)"] * 2
    set_version(site.app, "2")
    _, verdict = under_load(site, "test", "deploy", expected="2")
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    assert pages(site) == ["version 2 (email v2)"] * 2
    _, verdict = under_load(site, "test", "rollback", expected="1")
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    assert pages(site) == ["version 1 (email v1)"] * 2


def test_nginx_include_points_at_the_release_and_is_not_rewritten_needlessly(site):
    proc = site.ok("test", "deploy")
    name = re.search(r"deployed (\S+) to", proc.stdout).group(1)
    for h in site.hosts:
        root_file = site.deploy_path(h.name) / "root_dir.nginx.conf"
        assert root_file.read_text() == (
            f"set $root_dir {site.deploy_path(h.name)}/releases/{name}/public;\n"
        )
        assert not Path(f"{root_file}.tmp").exists()


def test_a_failing_nginx_test_keeps_the_old_include_and_site(site):
    site.ok("test", "deploy")
    before = {
        h.name: (site.deploy_path(h.name) / "root_dir.nginx.conf").read_text() for h in site.hosts
    }
    for h in site.hosts:
        # Only `set` lines pass the inventory; nginx -t refuses to set a built-in variable.
        site.overrides[h.name]["nginx"]["template"] = "set $root_dir {public_path};\nset $uri /;"
    set_version(site.app, "2")
    proc = site.fab("test", "deploy")
    assert proc.returncode == 1
    assert "at step 'nginx' (not live)" in proc.stderr
    assert "nginx test failed with the new include" in proc.stderr
    faults.record(
        "fault",
        "nginx -t fails on the new include",
        violations=int(pages(site) != ["version 1 (email v1)"] * 2),
        outcome="old include restored; nothing live; site answers v1",
    )
    for h in site.hosts:
        assert (site.deploy_path(h.name) / "root_dir.nginx.conf").read_text() == before[h.name]
    assert pages(site) == ["version 1 (email v1)"] * 2


def test_a_missing_public_dir_fails_before_go_live(site):
    site.ok("test", "deploy")
    for h in site.hosts:
        site.overrides[h.name]["nginx"]["public_dir"] = "web"
    proc = site.fab("test", "deploy")
    assert proc.returncode == 1
    assert "public directory missing" in proc.stderr
    assert pages(site) == ["version 1 (email v1)"] * 2


@pytest.mark.parametrize("strategy", ["fcgi", "http", "fpm-reload", "cachetool", "fcgi-roomy"])
def test_each_opcache_strategy_really_resets_the_opcache(site, strategy, tmp_path):
    """Each strategy resets; `fcgi` with `reset_above: 0`, since by default it keeps an
    opcache with room to spare (fcgi-roomy: the kit's 64 MiB hold the app many times)."""
    roomy = strategy == "fcgi-roomy"
    strategy = "fcgi" if roomy else strategy
    (site.app / "public" / "reset-opcache.php").write_text(
        "<?php echo opcache_reset() ? 'ok' : 'failed';\n"
    )
    site.ok("test", "deploy")
    pages(site)  # fills the opcache
    before = {h.name: status(w, site, h.name) for h, w in zip(site.hosts, site.webs, strict=True)}
    for h, w in zip(site.hosts, site.webs, strict=True):
        oc = {"strategy": strategy, "socket": str(w.fpm_socket)}
        if strategy == "fcgi" and not roomy:
            oc["reset_above"] = 0
        if strategy == "http":
            oc["url"] = w.url("/reset-opcache.php")
        if strategy == "fpm-reload":
            oc["reload"] = w.fpm_reload_command()
        if strategy == "cachetool":
            # A stand-in with cachetool's interface: `opcache:reset --fcgi=<socket>`.
            fake = tmp_path / "cachetool"
            fake.write_text(
                "#!/bin/sh\nsock=${2#--fcgi=}\n"
                f"SCRIPT_FILENAME={site.deploy_path(h.name)}/current/public/reset-opcache.php"
                ' REQUEST_METHOD=GET cgi-fcgi -bind -connect "$sock" | grep -q ok\n'
            )
            fake.chmod(0o755)
            oc["cachetool"] = str(fake)
        site.overrides[h.name]["opcache"] = oc
    set_version(site.app, "2")
    proc = site.ok("test", "deploy")
    assert "warning" not in proc.stderr, proc.stderr
    for h, w in zip(site.hosts, site.webs, strict=True):
        if strategy == "fcgi":  # the host's report says what the script decided
            said = re.search(rf"\[{h.name}\] opcache (kept|reset) at ([\d.]+)% in use", proc.stdout)
            assert said and said[1] == ("kept" if roomy else "reset"), proc.stdout
        if strategy == "fpm-reload":
            time.sleep(0.5)
        after = status(w, site, h.name)
        assert after["enabled"]
        reset = (
            after["restarts"] > before[h.name]["restarts"]
            or after["start"] != before[h.name]["start"]
        )
        assert reset != roomy, (before[h.name], after)


@pytest.mark.parametrize("socket", ["missing", "refusing"])
def test_a_failed_opcache_reset_is_a_warning_naming_the_host(site, socket, tmp_path):
    site.ok("test", "deploy")
    path = tmp_path / "php-fpm.sock"
    if socket == "refusing":  # a socket file nobody listens on: connection refused
        import socket as sockets

        s = sockets.socket(sockets.AF_UNIX)
        s.bind(str(path))
        s.close()
    for h in site.hosts:
        site.overrides[h.name]["opcache"]["socket"] = str(path)
    set_version(site.app, "2")
    proc = site.ok("test", "deploy")
    faults.record(
        "fault",
        f"php-fpm socket {socket} at the opcache reset",
        violations=int(pages(site) != ["version 2 (email v2)"] * 2),
        outcome="deploy live; one warning line per host",
    )
    for h in site.hosts:
        assert f"[{h.name}] warning: opcache reset (fcgi) failed" in proc.stderr
    assert pages(site) == ["version 2 (email v2)"] * 2


def test_warmup_compiles_the_new_release_before_go_live_and_a_bad_path_stops_it(site):
    site.ok("test", "deploy")
    for h in site.hosts:
        site.overrides[h.name]["opcache"]["strategy"] = "none"
    site.config["warmup"] = ["/"]
    set_version(site.app, "2")
    proc = site.ok("test", "deploy")
    name = re.search(r"deployed (\S+) to", proc.stdout).group(1)
    for h, w in zip(site.hosts, site.webs, strict=True):
        scripts = status(w, site, h.name)["scripts"]
        assert f"{site.deploy_path(h.name)}/releases/{name}/src/Email.php" in scripts
    # A warm-up path that fails (the app throws on mixed versions) stops the deploy.
    (site.app / "src" / "Email.php").write_text(
        (site.app / "src" / "Email.php").read_text().replace("'2'", "'3'")
    )
    proc = site.fab("test", "deploy")
    assert proc.returncode == 1
    assert "at step 'warmup' (not live): warm-up / answered 500" in proc.stderr
    assert pages(site) == ["version 2 (email v2)"] * 2


def test_a_failed_health_check_rolls_the_stage_back(site):
    site.ok("test", "deploy")
    for h, w in zip(site.hosts, site.webs, strict=True):
        site.overrides[h.name]["healthcheck"] = {"url": w.url("/"), "contains": "version 2"}
    set_version(site.app, "2")
    site.ok("test", "deploy")
    for h in site.hosts:  # a header line counts too
        site.overrides[h.name]["healthcheck"]["contains"] = "Content-Type: text/plain"
    site.ok("test", "deploy")
    for h in site.hosts:
        site.overrides[h.name]["healthcheck"]["contains"] = "version 2"
    assert pages(site) == ["version 2 (email v2)"] * 2
    set_version(site.app, "3")
    proc = site.fab("test", "deploy")
    assert proc.returncode == 1
    assert "health check failed on 2/2 host(s)" in proc.stderr
    assert "reverted: current -> releases/" in proc.stdout
    assert "(health check failed)" in proc.stdout
    assert pages(site) == ["version 2 (email v2)"] * 2
