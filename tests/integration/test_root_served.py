"""An app that serves index.php from the top of its tree (WordPress, DokuWiki and many older
apps): `nginx: {public_dir: "."}`, a writable data directory shared between releases, and
directories nginx must never serve denied in the site. Deployed and rolled back under load.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request

import pytest

from tests.kit.load import set_version
from tests.kit.web import WebHosts

from .conftest import REPO, example_project, under_load

pytestmark = pytest.mark.integration

# What the README shows for such a site: the release's own directory is the document root,
# and what must not be served is denied before PHP sees the request.
DENY = r"location ~ ^/(data|conf|\.git)(/|$) { deny all; }"


@pytest.fixture
def root_site(tmp_path, sshd_hosts):
    hosts = list(sshd_hosts)[:2]
    config = {"shared_dirs": ["data"], "writable_dirs": ["data"], "keep_releases": 3}
    project = example_project(tmp_path, hosts, config, app=False)
    app = project.app
    shutil.copytree(REPO / "examples" / "app" / "src", app / "src")
    index = (REPO / "examples" / "app" / "public" / "index.php").read_text()
    (app / "index.php").write_text(index.replace("/../src/", "/src/"))
    (app / "conf").mkdir()
    (app / "conf" / "secret.php").write_text("<?php echo 'the database password';\n")
    (app / "data" / "pages").mkdir(parents=True)
    (app / "data" / "pages" / "start.txt").write_text("seeded page\n")
    paths = [project.deploy_path(h.name) for h in hosts]
    with WebHosts(tmp_path / "web", paths, names=[h.name for h in hosts], extra=DENY) as webs:
        for h, web in zip(hosts, webs, strict=True):
            project.overrides[h.name] = web.inventory_settings(public_dir=".")
        project.webs = list(webs)
        yield project


def status_of(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def stat_of(path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mode, st.st_uid, st.st_gid


def test_a_root_served_app_deploys_and_rolls_back_under_load_with_its_data_kept(root_site):
    site = root_site
    site.ok("test", "deploy")
    data = {h.name: site.deploy_path(h.name) / "shared" / "data" for h in site.hosts}
    before = {n: stat_of(d) for n, d in data.items()}
    for web in site.webs:
        assert urllib.request.urlopen(web.url("/"), timeout=5).read().startswith(b"version 1")
        for denied in ("/conf/secret.php", "/data/pages/start.txt", "/conf/", "/data"):
            assert status_of(web.url(denied)) == 403, denied
    (data["web1"] / "pages" / "written-by-the-app.txt").write_text("kept\n")
    set_version(site.app, "2")
    _, verdict = under_load(site, "test", "deploy", expected="2")
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    _, verdict = under_load(site, "test", "rollback", expected="1")
    assert verdict.requests > 100, verdict
    assert (verdict.failed, verdict.mixed, verdict.stale_after_return) == (0, 0, 0), verdict
    assert {n: stat_of(d) for n, d in data.items()} == before
    assert (data["web1"] / "pages" / "written-by-the-app.txt").read_text() == "kept\n"
    for h in site.hosts:
        current = site.deploy_path(h.name) / "current"
        assert os.readlink(current / "data").endswith("shared/data")
        root_file = (site.deploy_path(h.name) / "root_dir.nginx.conf").read_text()
        assert f"set $root_dir {os.path.realpath(current)};" in root_file
