"""`{{key}}` in shell text: pasted shell-quoted where it stands in a plain word; refused
inside quotes or a here-document when its value is no plain word (there it would run)."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory import parse
from atomicdeploy.inventory.quoting import quoted_refs
from atomicdeploy.inventory.refs import _REF
from tests import faults


@pytest.mark.parametrize(
    ("text", "inside"),
    [
        ("echo {{a}}", []),
        ("echo '{{a}}'", ["quotes"]),
        ('echo "{{a}}"', ["quotes"]),
        ('echo "x {{a}} y"', ["quotes"]),
        ('echo "$(cat {{a}})"', []),  # a command substitution is read afresh
        ('echo "`cat {{a}}` {{b}}"', ["quotes"]),
        ("echo \\'{{a}} it\\'s", []),  # escaped quotes open nothing
        ("# don't\necho {{a}}", []),  # nor does one in a comment
        ("cat > f <<EOF\n{{a}}\nEOF\necho {{b}}", ["a here-document"]),
        ("cat <<-'EOF'\n\t{{a}}\n\tEOF\necho {{b}} '{{c}}'", ["a here-document", "quotes"]),
        ("x=$((1+(2))) {{a}} $(echo (a) {{b}})", []),
        ("cat <<<'{{a}}' {{b}}", ["quotes"]),  # a here-string is an ordinary word
        ("echo '{{a}}", ["quotes"]),  # an unclosed quote
    ],
)
def test_where_a_placeholder_stands(text, inside):
    assert [where for _, where in quoted_refs(text, _REF)] == inside


def inventory(application: str, hook: str, test: str = "sudo -n nginx -t") -> str:
    return textwrap.dedent(f"""\
        config:
          application: {json.dumps(application)}
          deploy_path: /srv/shop
          nginx: {{test: {json.dumps(test)}}}
          hooks:
            after_switch:
              - {json.dumps(hook)}
        hosts:
          web1: {{}}
        """)


HOSTILE = [
    "shop; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "a'; touch pwned; '",
    'a"; touch pwned; "',
    "a\nEOF\ntouch pwned\ncat <<EOF",
    "\\'; touch pwned #",
]
HOOKS = [
    "echo {{application}}",
    "echo '{{application}}'",
    'echo "{{application}}"',
    'echo "name: {{application}}!"',
    "echo x'{{application}}'y",
    'echo "$(echo {{application}})"',
    "cat <<EOF\n{{application}}\nEOF",
    "cat <<'EOF'\n{{application}}\nEOF",
    "cd {{deploy_path}}/x 2>/dev/null; echo {{application}}",
]


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_is_refused_at_load_or_printed_never_run(tmp_path, hook, value):
    """Each hook spelling: either the inventory is refused (one line, exit 2) or the command,
    run by sh, prints the value and never runs the `touch` inside it."""
    with faults.trying(
        "bad input",
        "{{application}} holding shell code, quoted or not, in a hook",
        "refused at load (inside quotes) or one word (unquoted)",
    ):
        try:
            (host,) = parse(inventory(value, hook)).hosts
        except ConfigError as exc:
            assert "stands inside" in str(exc) and "\n" not in str(exc)
            assert value not in str(exc)  # a value may be a secret: never echoed
            return
        run = host.hooks["after_switch"][0].run
        subprocess.run(["sh", "-c", run], cwd=tmp_path, capture_output=True, timeout=10)
        assert not (tmp_path / "pwned").exists(), run


def test_the_refusal_names_the_field_and_says_how_to_write_it():
    with pytest.raises(ConfigError) as info:
        parse(inventory("shop; touch x", "echo '{{application}}'"))
    assert str(info.value) == (
        "inventory.yml: config: hooks.after_switch: {{application}} stands inside quotes,"
        " where its value would be read as code: write it without quotes"
        ' (`cd {{deploy_path}}/x`, not `cd "{{deploy_path}}/x"`): it is pasted shell-quoted,'
        " as one word"
    )
    with pytest.raises(ConfigError) as info:
        parse(inventory("a b", "true", test="nginx -t -c '/etc/{{application}}.conf'"))
    assert "config: nginx.test: {{application}} stands inside quotes" in str(info.value)


def test_a_plain_value_may_stand_anywhere_so_ordinary_hooks_do_not_change():
    hook = "cd \"{{deploy_path}}/x\" && echo '{{application}}' {{application}}"
    (host,) = parse(inventory("shop", hook, test="nginx -t -c '/etc/{{application}}.conf'")).hosts
    assert host.hooks["after_switch"][0].run == "cd \"/srv/shop/x\" && echo 'shop' shop"
    assert host.nginx.test == "nginx -t -c '/etc/shop.conf'"


def test_values_outside_shell_text_are_pasted_as_they_are():
    text = inventory("shop; it's", "echo {{application}}").replace(
        "deploy_path: /srv/shop", 'deploy_path: "/srv/{{application}}"'
    )
    (host,) = parse(text).hosts
    assert host.deploy_path == "/srv/shop; it's"
    assert host.hooks["after_switch"][0].run == "echo 'shop; it'\"'\"'s'"
