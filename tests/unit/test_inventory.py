"""inventory: a valid Deployer-style file, and every mistake as one ConfigError line."""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from atomicdeploy.errors import EXIT_USAGE, ConfigError
from atomicdeploy.inventory import KEYS, MAX_INVENTORY_BYTES, HostConfig, load, parse
from tests import faults

VALID = """
config:
  application: shop
  deploy_path: /srv/{{application}}
  keep_releases: 3
  shared_dirs: [storage, "bootstrap/cache/"]
  shared_files: [.env]
  writable_dirs: [storage]
  remote_user: deploy
  known_hosts: ~/.ssh/known_hosts_shop

hosts:
  web1.example.com:
    port: 2222
    labels:
      stage: prod
      role: web
  web2:
    hostname: 10.0.0.2
    deploy_path: "/var/www/{{alias}}"
    keep_releases: 10
    labels: {stage: prod}
  staging:
    deploy_path: "/srv/staging app/"
    writable_mode: acl
    http_user: www-data
    exclude: [".git", "{{deploy_path}}/tmp"]
    labels: {stage: staging, port: 8080}
  nostage:
"""


def bad(text: str, path: Path = Path("inventory.yml")) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(textwrap.dedent(text), path)
    exc = info.value
    assert exc.exit_code == EXIT_USAGE == 2
    lines = str(exc).split("\n")  # every problem at once, one line each
    assert all(line.startswith(f"{path.name}: ") for line in lines), str(exc)
    return exc


def raised(fn, *args) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return info.value


def host(body: str, name: str = "web1") -> str:
    """An inventory with one host whose entry is `body` (YAML, indented by us)."""
    lines = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"hosts:\n  {name}:\n{lines}\n"


# --- a valid inventory ------------------------------------------------------------------------


def test_parse_valid_inventory():
    inv = parse(VALID, Path("/proj/inventory.yml"))
    web1, web2, staging, nostage = inv.hosts
    assert [h.name for h in inv.hosts] == ["web1.example.com", "web2", "staging", "nostage"]

    assert web1.deploy_path == "/srv/shop"
    assert web1.hostname == "web1.example.com"
    assert web1.port == 2222
    assert web1.keep_releases == 3
    assert web1.shared_dirs == ("storage", "bootstrap/cache")
    assert web1.shared_files == (".env",)
    assert web1.writable_dirs == ("storage",)
    assert web1.remote_user == "deploy"
    assert web1.known_hosts == os.path.expanduser("~/.ssh/known_hosts_shop")
    assert web1.labels == {"stage": "prod", "role": "web"}
    assert web1.stage == "prod"

    assert web2.hostname == "10.0.0.2"
    assert web2.deploy_path == "/var/www/web2"  # {{alias}} is the host's inventory name
    assert web2.keep_releases == 10
    assert web2.port is None

    assert staging.deploy_path == "/srv/staging app"  # normalised
    assert staging.writable_mode == "acl" and staging.http_user == "www-data"
    assert staging.exclude == (".git", "/srv/staging app//tmp")
    assert staging.labels == {"stage": "staging", "port": "8080"}

    assert nostage.stage is None
    assert nostage.deploy_path == "/srv/shop"


def test_defaults():
    (h,) = parse(host("deploy_path: /srv/app")).hosts
    assert h == HostConfig(
        name="web1",
        deploy_path="/srv/app",
        hostname="web1",
        known_hosts=os.path.expanduser("~/.ssh/known_hosts"),
    )
    assert (h.keep_releases, h.writable_mode, h.exclude, h.parallel) == (5, "chmod", (".git",), 10)
    assert h.stage is None


def test_stages_in_inventory_order():
    inv = parse(VALID)
    assert inv.stages == {"prod": ("web1.example.com", "web2"), "staging": ("staging",)}
    assert list(inv.stages) == ["prod", "staging"]
    assert [h.name for h in inv.stage("prod")] == ["web1.example.com", "web2"]


def test_unknown_stage_lists_the_stages():
    exc = raised(parse(VALID).stage, "nope")
    assert str(exc) == "inventory.yml: stage 'nope' has no hosts (stages: prod, staging)"
    assert exc.exit_code == EXIT_USAGE
    lone = parse(host("deploy_path: /srv/app"))
    assert "(stages: none)" in str(raised(lone.stage, "prod"))


def test_references_expand_in_lists_and_maps():
    (h,) = parse(
        host("""
        application: "{{alias}}-app"
        deploy_path: "/srv/{{application}}/{{port}}"
        port: 22
        shared_dirs: ["{{application}}-data"]
        labels: {stage: "{{application}}"}
    """)
    ).hosts
    assert h.deploy_path == "/srv/web1-app/22"
    assert h.shared_dirs == ("web1-app-data",)
    assert h.stage == "web1-app"


def test_host_overrides_replace_lists_and_null_means_default():
    text = """
    config: {deploy_path: /srv/app, shared_dirs: [a, b], port: 2200}
    hosts:
      web1: {shared_dirs: [c], port: null}
    """
    (h,) = parse(textwrap.dedent(text)).hosts
    assert h.shared_dirs == ("c",)
    assert h.port is None


def test_every_key_has_a_hostconfig_field_and_help():
    assert {f.name for f in fields(HostConfig)} == {"name", *(k.field for k in KEYS.values())}
    assert all(spec.help for spec in KEYS.values())


# --- mistakes: one line naming the key and the host -------------------------------------------


def test_unknown_key_with_hint():
    exc = bad(host("deploy_path: /srv/app\nkeep_release: 3"))
    assert str(exc) == (
        "inventory.yml: host web1: unknown key 'keep_release' (did you mean 'keep_releases'?)"
    )
    exc = bad("config:\n  deploy_paht: /srv/app\nhosts:\n  web1:\n")
    assert str(exc) == (
        "inventory.yml: config: unknown key 'deploy_paht' (did you mean 'deploy_path'?)\n"
        "inventory.yml: host web1: deploy_path is missing (set it under config: or the host)"
    )
    exc = bad(host("deploy_path: /srv/app\nzzzzzz: 1"))
    assert "unknown key 'zzzzzz'" in str(exc) and "did you mean" not in str(exc)


@pytest.mark.parametrize(
    ("body", "key", "why"),
    [
        ('keep_releases: "5"', "keep_releases", "must be an integer, not a string"),
        ("keep_releases: 0", "keep_releases", "must be between 1 and 1000"),
        ("keep_releases: 2.5", "keep_releases", "must be an integer"),
        ("port: true", "port", "must be an integer, not a boolean"),
        ("port: 70000", "port", "between 1 and 65535"),
        ("shared_dirs: storage", "shared_dirs", "must be a list of strings, not a string"),
        ("shared_files: [.env, 3]", "shared_files", "must be a list of strings"),
        ("labels: [stage, prod]", "labels", "must be a map of names to strings"),
        ("labels: {stage: true}", "labels", "must be a map of names to strings"),
        ("writable_mode: sudo", "writable_mode", "must be one of chmod, acl, chown, chgrp"),
        ("writable_recursive: yes please", "writable_recursive", "must be true or false"),
        ("forward_agent: 1", "forward_agent", "must be true or false"),
        ("remote_user: 'bad user'", "remote_user", "not a valid user name"),
        ("hostname: 'web1 web2'", "hostname", "not a host name, IP address or ssh_config alias"),
        ('hostname: "web1\\n[evil]:22"', "hostname", "not a host name"),
        ("hostname: 'web1,github.com'", "hostname", "not a host name"),
        ("hostname: '*'", "hostname", "not a host name"),
        ("hostname: '-oProxyCommand=x'", "hostname", "not a host name"),
        ("hostname: ''", "hostname", "not a host name"),
        ("hostname: '.'", "hostname", "not a host name"),
        ("hostname: deploy@web1", "hostname", "not a host name"),
        ("hostname: 22", "hostname", "must be a string, not an integer"),
        ("http_user: '$(id)'", "http_user", "not a valid user name"),
        ("application: [a]", "application", "must be a string, not a list"),
        ("exclude: {a: b}", "exclude", "must be a list of strings, not a map"),
        ("umask: 022", "umask", "must be quoted, e.g. '022', not the number 18"),
        ("umask: '0x22'", "umask", "must be an octal umask"),
        ("umask: '; rm -rf /'", "umask", "must be an octal umask"),
        ("secret_files: [../.env]", "secret_files", "must not contain '..'"),
        ("healthcheck: {url: 'http://h/a b'}", "healthcheck", "must not contain spaces"),
        ('healthcheck: {url: "http://h/\\n-K /etc"}', "healthcheck", "control characters"),
    ],
)
def test_wrong_types(body, key, why):
    exc = bad(host(f"deploy_path: /srv/app\n{body}"))
    assert str(exc).startswith(f"inventory.yml: host web1: {key} ")
    assert why in str(exc)


@pytest.mark.parametrize(
    "address", ["10.0.0.2", "::1", "fe80::1%eth0", "web-1.example.com", "my_alias", "2001:db8::5"]
)
def test_hostnames_that_are_addresses_or_aliases_are_kept(address):
    [web1] = parse(host(f"deploy_path: /srv/app\nhostname: '{address}'"), Path("i.yml")).hosts
    assert web1.hostname == address


def test_a_wrong_value_is_reported_where_it_was_written_once():
    exc = bad(
        "config:\n  keep_releases: '5'\nhosts:\n  web1: {deploy_path: /srv/app}\n"
        "  web2: {deploy_path: /srv/app}\n  web3: {deploy_path: /srv/app, port: x}\n"
    )
    assert str(exc) == (
        "inventory.yml: config: keep_releases must be an integer, not a string\n"
        "inventory.yml: host web3: port must be an integer, not a string"
    )


def test_every_error_at_once_with_hints_by_meaning():
    exc = bad(
        "import: recipe/laravel.php\nconfig:\n  deploy_path: /srv/app\n  become: root\n"
        "hosts:\n  web1: {user: deploy, keep_releases: x}\n  web2: {linked_dirs: [a]}\n"
    )
    lines = str(exc).split("\n")
    assert lines[0].startswith("inventory.yml: unknown top-level key 'import'")
    assert "recipes: [laravel]" in lines[0]
    assert "config: unknown key 'become' (atomicdeploy runs every command as" in lines[1]
    assert "host web1: unknown key 'user' (did you mean 'remote_user'?" in lines[2]
    assert "host web1: keep_releases must be an integer" in lines[3]
    assert "host web2: unknown key 'linked_dirs' (did you mean 'shared_dirs'?" in lines[4]
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("srv/app", "must be an absolute path"),
        ("'~app'", "must be an absolute path or ~/path"),
        ("/", "must not be / itself"),
        ("//", "must not be / itself"),
        ("/./", "must not be / itself"),
        ("/srv/..", "deploy_path"),
        ("/srv/app/../etc", "must not contain '..'"),
        ("/srv/../srv/app", "must not contain '..'"),
        ('"/srv/a\\nb"', "must not contain NUL or newline"),
        ("''", "must be an absolute path"),
        ("42", "must be a string"),
    ],
)
def test_bad_deploy_path(value, why):
    exc = bad(host(f"deploy_path: {value}"))
    assert str(exc).startswith("inventory.yml: host web1: deploy_path ")
    assert why in str(exc)


def test_missing_deploy_path():
    exc = bad(host("port: 22"))
    assert str(exc) == (
        "inventory.yml: host web1: deploy_path is missing (set it under config: or the host)"
    )
    bad("hosts:\n  web1:\n")
    bad(host("deploy_path: null"))


def test_duplicate_host_names():
    exc = bad(
        "hosts:\n  web1: {deploy_path: /a}\n  web2: {deploy_path: /b}\n  web1: {deploy_path: /c}\n"
    )
    assert "duplicate key 'web1'" in str(exc)
    assert "line 4" in str(exc)


def test_duplicate_keys_inside_a_host_are_refused():
    exc = bad(host("deploy_path: /srv/app\nport: 22\nport: 23"))
    assert "duplicate key 'port'" in str(exc)
    assert "line 5" in str(exc)


def test_duplicate_keys_inside_a_host_names_the_host():
    exc = bad(host("deploy_path: /srv/app\nport: 22\nport: 23"))
    assert "web1" in str(exc)


def test_empty_file():
    for text in ("", "\n\n", "# only a comment\n", "---\n"):
        exc = bad(text)
        assert "empty" in str(exc)


def test_invalid_yaml_names_the_line():
    exc = bad("hosts:\n  web1:\n    deploy_path: /srv/app\n   port: [22\n")
    assert "invalid YAML at line" in str(exc)
    exc = bad("hosts:\n  web1:\n\tdeploy_path: /srv/app\n")
    assert "invalid YAML at line 3" in str(exc)


def test_python_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    for tag in ("!!python/object/apply:os.system", "!!python/object/apply:subprocess.call"):
        text = f'hosts:\n  web1:\n    deploy_path: {tag} ["touch {marker}"]\n'
        exc = bad(text)
        assert "invalid YAML at line 3" in str(exc)
        assert "python/object/apply" in str(exc)
    bad(f'hosts: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert not marker.exists()


def test_top_level_must_be_a_map():
    exc = bad("- web1\n- web2\n")
    assert "top level must be a map" in str(exc)
    bad("just a string\n")


def test_unknown_top_level_key():
    exc = bad("config: {}\nhost:\n  web1: {deploy_path: /a}\n")
    assert str(exc) == (
        "inventory.yml: unknown top-level key 'host' (valid: config, hosts)\n"
        "inventory.yml: 'hosts:' must be a map with at least one host"
    )


def test_hosts_and_config_shapes():
    assert "at least one host" in str(bad("config: {deploy_path: /a}\n"))
    assert "at least one host" in str(bad("hosts: {}\n"))
    assert "at least one host" in str(bad("hosts: [web1]\n"))
    assert "config: must be a map" in str(bad("config: [a]\nhosts:\n  web1:\n"))
    assert "host web1: must be a map, not a list" in str(bad("hosts:\n  web1: [a]\n"))
    assert "a host name must be" in str(bad("hosts:\n  'web 1': {deploy_path: /a}\n"))
    assert "a host name must be" in str(bad("hosts:\n  -web1: {deploy_path: /a}\n"))


def test_host_name_with_trailing_newline_is_refused():
    exc = bad('hosts:\n  "web1\\n": {deploy_path: /srv/app}\n')
    assert "a host name must be" in str(exc)


def test_user_name_with_trailing_newline_is_refused():
    exc = bad(host('deploy_path: /srv/app\nremote_user: "deploy\\n"'))
    assert "remote_user" in str(exc)


def test_missing_reference():
    exc = bad(host('deploy_path: "/srv/{{missing}}"'))
    assert str(exc) == (
        "inventory.yml: host web1: {{missing}} refers to a key that is not set (placeholders:"
        " release_path, release_name, previous_release, deploy_path, current_path, bin/php,"
        " bin/composer, or any key of the host)"
    )


def test_self_reference_cycles():
    exc = bad(host('deploy_path: /srv/app\napplication: "{{application}}"'))
    assert str(exc) == (
        "inventory.yml: host web1: {{application}} refers to itself (application -> application)"
    )
    exc = bad(
        host(
            'deploy_path: "/srv/{{application}}"\napplication: "{{source}}"\n'
            'source: "{{deploy_path}}"'
        )
    )
    assert "refers to itself" in str(exc) and "host web1" in str(exc)


def test_reference_to_a_list_is_refused():
    exc = bad(host('deploy_path: "/srv/{{exclude}}"\nexclude: [a]'))
    assert "{{exclude}} must refer to a string or number" in str(exc)


@pytest.mark.parametrize("key", ["shared_dirs", "shared_files", "writable_dirs"])
@pytest.mark.parametrize("value", ["../etc", "a/../../b", "/etc", "''"])
def test_shared_paths_escaping_the_release(key, value):
    exc = bad(host(f"deploy_path: /srv/app\n{key}: [{value}]"))
    assert str(exc).startswith(f"inventory.yml: host web1: {key} ")


def test_shared_path_inside_a_shared_dir():
    exc = bad(host("deploy_path: /srv/app\nshared_dirs: [storage]\nshared_files: [storage/x]"))
    assert "shared path 'storage/x' is inside shared dir 'storage'" in str(exc)


@pytest.mark.parametrize("mode", ["acl", "chown"])
def test_acl_or_chown_needs_http_user(mode):
    exc = bad(host(f"deploy_path: /srv/app\nwritable_mode: {mode}\nwritable_dirs: [storage]"))
    assert str(exc) == f"inventory.yml: host web1: http_user is required with writable_mode {mode}"
    # Nothing to make writable: no user needed.
    parse(host(f"deploy_path: /srv/app\nwritable_mode: {mode}"))


def test_empty_stage_label():
    exc = bad(host("deploy_path: /srv/app\nlabels: {stage: ' '}"))
    assert "labels.stage is empty" in str(exc) and "web1" in str(exc)


def test_error_names_the_file():
    exc = bad(host("deploy_path: relative"), Path("/etc/deploy/prod.yml"))
    assert str(exc).startswith("prod.yml: host web1: deploy_path")


# --- load -------------------------------------------------------------------------------------


def test_load(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(VALID)
    inv = load(path)
    assert inv.path == path
    assert len(inv.hosts) == 4


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.yml"
    exc = raised(load, path)
    assert str(exc) == f"{path}: inventory file not found"
    assert exc.exit_code == EXIT_USAGE


def test_load_too_large_file(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(host("deploy_path: /srv/app") + "#" * (MAX_INVENTORY_BYTES + 1))
    exc = raised(load, path)
    assert str(exc) == f"inventory.yml: larger than {MAX_INVENTORY_BYTES} bytes"
    assert exc.exit_code == EXIT_USAGE


def test_load_unreadable_inputs(tmp_path):
    d = tmp_path / "dir.yml"
    d.mkdir()
    exc = raised(load, d)
    assert "cannot read inventory" in str(exc) and "\n" not in str(exc)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"hosts:\n  web1: {deploy_path: /\xff}\n")
    exc = raised(load, binary)
    assert "cannot read inventory" in str(exc)


def test_config_as_a_list_is_refused_not_taken_as_empty():
    with pytest.raises(ConfigError, match="config: must be a map, not a list"):
        parse("config: []\nhosts:\n  web1: {deploy_path: /srv/app}\n")
    (h,) = parse("config:\nhosts:\n  web1: {deploy_path: /srv/app}\n").hosts  # empty is fine
    assert h.deploy_path == "/srv/app"


@pytest.mark.parametrize("template", ["set $root_dir {x};", "root {0};", "set $a {;"])
def test_an_nginx_template_with_an_unknown_field_is_refused_at_load(template):
    text = f"hosts:\n  web1:\n    deploy_path: /srv/app\n    nginx: {{template: '{template}'}}\n"
    with pytest.raises(ConfigError, match=re.escape("nginx .template may only use {public_path}")):
        parse(text)


@pytest.mark.parametrize(
    "template",
    [
        "include /etc/shadow;",
        "access_log /root/.ssh/authorized_keys;",
        "set $root_dir {public_path}; include /etc/nginx/secret.conf;",
        "set $root_dir {public_path};\\nroot /;",
        "location / {{ alias /; }}",
        'set $root_dir \\"{public_path}\\";',
        "set $root_dir $document_root;",
        "set $root_dir {public_path}\\\\;",
        "set $root_dir {public_path};\\nload_module /tmp/evil.so;",
        "ssl_certificate_key /etc/ssl/private/key.pem;",
    ],
)
def test_an_nginx_template_with_anything_but_set_lines_is_refused_at_load(template):
    """root's nginx parses the include the deploy user writes: it may only set variables."""
    text = f'hosts:\n  web1:\n    deploy_path: /srv/app\n    nginx: {{template: "{template}"}}\n'
    with pytest.raises(ConfigError) as exc:
        parse(text)
    said = str(exc.value)
    assert said.startswith("inventory.yml: host web1: nginx .template may only hold `set`")
    assert "\n" not in said and exc.value.exit_code == EXIT_USAGE
    faults.record(
        "bad input",
        "nginx template with a directive other than `set`",
        outcome="refused at load: exit 2, one line naming the line",
    )


@pytest.mark.parametrize(
    "template",
    [
        "set $root_dir {public_path};",
        "# the release\\nset $root_dir {public_path};\\nset $release_name {release};\\n",
        "  set\\t$app_root {release_path} ;",
    ],
)
def test_set_only_nginx_templates_load(template):
    text = f'hosts:\n  web1:\n    deploy_path: /srv/app\n    nginx: {{template: "{template}"}}\n'
    (h,) = parse(text).hosts
    assert h.nginx is not None and h.nginx.template.startswith(("set", "#", "  set"))


def test_a_placeholder_in_shell_text_is_one_quoted_word_elsewhere_pasted_as_is():
    text = textwrap.dedent("""\
        config:
          application: "shop; touch x"
          deploy_path: /srv/{{alias}}
          hooks:
            after_switch:
              - echo {{application}} at {{deploy_path}}
              - {run: "echo {{application}}", once: true}
          nginx: {test: "nginx -t -c /etc/{{alias}}.conf", root_file: "{{deploy_path}}/r.conf"}
        hosts:
          web1: {}
        """)
    (h,) = parse(text).hosts
    runs = [c.run for c in h.hooks["after_switch"]]
    assert runs == ["echo 'shop; touch x' at /srv/web1", "echo 'shop; touch x'"]
    assert h.nginx.test == "nginx -t -c /etc/web1.conf"  # a plain value stays as it is
    assert h.deploy_path == "/srv/web1" and h.nginx.root_file == "/srv/web1/r.conf"
    assert h.application == "shop; touch x"
    faults.record(
        "bad input",
        "{{key}} with shell text in a hook command",
        outcome="pasted shell-quoted: one word, never code",
    )
