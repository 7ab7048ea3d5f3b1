"""secrets: masking hides every secret, its quoted forms and any URL's password."""

from __future__ import annotations

import shlex
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from atomicdeploy.secrets import MASK, Masker, url_passwords

# --- Masker -----------------------------------------------------------------------------------


def test_every_occurrence_is_masked():
    assert Masker.of(["hunter2"]).mask("pw=hunter2 again hunter2") == "pw=*** again ***"


def test_a_secret_containing_another_is_masked_whole():
    masker = Masker.of(["abc", "xxabcxx"])
    assert masker.mask("[xxabcxx] [abc]") == "[***] [***]"


def test_overlapping_secrets_leave_no_tail_visible():
    # Masking "abc" first, then looking for "bcdef", would leave "def" readable.
    assert Masker.of(["abc", "bcdef"]).mask("<abcdef>") == "<***>"


def test_overlapping_occurrences_of_one_secret_are_one_run():
    assert Masker.of(["aaa"]).mask("xaaaaay") == "x***y"


def test_adjacent_occurrences_each_become_a_mask():
    assert Masker.of(["tok"]).mask("toktok") == "******"


def test_url_quoted_form_is_masked():
    secret = "p@ss w/rd"
    text = f"https://user:{quote(secret, safe='')}@db.example/x"
    assert Masker.of([secret]).mask(text) == "https://user:***@db.example/x"


def test_shell_quoted_form_is_masked_whole():
    secret = "it's secret"
    quoted = shlex.quote(secret)
    assert quoted != secret
    assert Masker.of([secret]).mask(f"echo {quoted} > .env") == "echo *** > .env"


@pytest.mark.parametrize("short", ["", "a", "ab"])
def test_values_shorter_than_three_characters_are_not_masked(short):
    masker = Masker.of([short])
    assert not masker
    assert masker.mask("a cab at the lab") == "a cab at the lab"


def test_three_characters_are_enough():
    assert Masker.of(["abc"]).mask("xabcx") == "x***x"


def test_empty_masker_leaves_text_unchanged():
    assert not Masker.of([])
    assert Masker.of([]).mask("nothing *** to hide") == "nothing *** to hide"


def test_masker_with_secrets_is_true():
    assert Masker.of(["secret"])


def test_repr_never_shows_the_secrets():
    masker = Masker.of(["hunter2"])
    assert "hunter2" not in repr(masker)
    assert "hunter2" not in str(masker)


def test_a_secret_made_of_stars_cannot_reform_across_a_mask():
    # "aa**" -> "a***" would still contain "a**" after one pass.
    assert "a**" not in Masker.of(["a**"]).mask("aa**")


@given(st.text(), st.text(min_size=3), st.text())
def test_masked_text_never_contains_the_secret(before, secret, after):
    assume(secret != MASK)  # "***" is the mask itself
    masked = Masker.of([secret]).mask(before + secret + after)
    assert secret not in masked


@given(st.text(), st.lists(st.text(min_size=3), max_size=4))
def test_no_secret_survives_among_several(text, secrets):
    assume(MASK not in secrets)
    masked = Masker.of(secrets).mask(text + "".join(secrets) + text)
    for secret in secrets:
        assert secret not in masked


@given(st.text(alphabet="abc xyz", max_size=40))
def test_text_without_secrets_is_unchanged(text):
    assert Masker.of(["QQQ", "RR!R"]).mask(text) == text


# --- passwords in URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "health check: https://deploy:pw-1@h.example/up answered 503",
            "health check: https://deploy:***@h.example/up answered 503",
        ),
        (
            "git@github.com:shop/app.git and ssh://git@h/x",
            "git@github.com:shop/app.git and ssh://git@h/x",
        ),
        ("fetch https://u:p%40ss@h/r.git failed", "fetch https://u:***@h/r.git failed"),
        ("two: http://a:b@x/ http://c:d@y/", "two: http://a:***@x/ http://c:***@y/"),
    ],
)
def test_any_url_password_is_masked_without_being_listed(text, shown):
    assert Masker.of([]).mask(text) == shown
    assert Masker.of(["unrelated-secret"]).mask(text) == shown


def test_url_passwords_are_found_as_written_and_decoded():
    assert url_passwords(["https://u:p%40ss@h/", "https://h/", "http://u@h/"]) == ["p%40ss", "p@ss"]
    assert Masker.of(url_passwords(["https://u:p%40ss@h/"])).mask("login p@ss refused") == (
        "login *** refused"
    )


def test_text_from_hosts_is_printed_with_its_control_characters_escaped():
    import io

    from atomicdeploy.report import Reporter, printable

    hostile = "R1\x1b]0;owned\x07\x1b[2J\rspoofed\u202e\x85"
    assert printable(hostile) == "R1\\x1b]0;owned\\x07\\x1b[2J\\x0dspoofed\\u202e\\x85"
    assert printable("plain ü ☃\ttab\nnext") == "plain ü ☃\ttab\nnext"
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out, err, live=False, mask=lambda t: t.replace("s3cr3t", "***"))
    reporter.host("web1", f"s3cr3t {hostile}")
    reporter.error(f"[web1] failed: {hostile}")
    reporter.table(["release"], [[hostile]])
    printed = out.getvalue() + err.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed and "\r" not in printed
    assert "[web1] *** R1\\x1b]0;owned" in printed


def test_a_newline_from_a_host_never_prints_a_line_of_its_own():
    """A lock owner or stderr line holding "\\n[web2] ..." would forge a line: in one-line
    texts (errors, warnings, lines) and table cells the newline is shown as `\\x0a`."""
    import io

    from atomicdeploy.report import Reporter

    forged = "eve\n[web2] live: current -> releases/X\r\x0b\x1c\u2028"
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out, err, live=False)
    reporter.error(f"[web1] failed: locked by {forged}")
    reporter.warn("web1", forged)
    reporter.line(f"  locked by {forged}")
    reporter.table(["host", "lock"], [["web1", forged]], indent="")
    printed = (err.getvalue() + out.getvalue()).splitlines()
    assert not any(line.startswith("[web2]") for line in printed)
    assert len(printed) == 5  # 3 lines, a header and one row
    assert printed[0] == (
        "[web1] failed: locked by eve\\x0a[web2] live: current -> releases/X\\x0d\\x0b\\x1c\\u2028"
    )


def test_a_hooks_output_keeps_its_lines_each_with_the_host_and_its_tabs():
    import io

    from atomicdeploy.report import Reporter

    out = io.StringIO()
    Reporter(out, io.StringIO(), live=False).host("web1", "PHP Fatal\n\t#0 app.php(3)\x1b[2J")
    assert out.getvalue() == "[web1] PHP Fatal\n[web1] \t#0 app.php(3)\\x1b[2J\n"


def test_table_columns_line_up_with_what_is_printed_and_cells_are_masked():
    import io

    from atomicdeploy.report import Reporter

    out = io.StringIO()
    reporter = Reporter(out, io.StringIO(), live=False, mask=Masker.of(["hunter2"]).mask)
    reporter.table(["release", "user"], [["R1\x1b[2J\t", "x"], ["R2", "hunter2"]], indent="")
    width = len("R1\\x1b[2J\\x09")  # the cell as printed
    assert out.getvalue().splitlines() == [
        f"{'release':{width}}  user",
        "R1\\x1b[2J\\x09  x",
        f"{'R2':{width}}  ***",
    ]


def test_a_url_password_holding_a_raw_at_sign_is_masked_whole():
    text = "fetch https://deploy:p@ss@git.example/app.git?a=b@c failed"
    assert Masker.of([]).mask(text) == "fetch https://deploy:***@git.example/app.git?a=b@c failed"
    assert Masker.of([]).mask("https://u:pw@h#x@y") == "https://u:***@h#x@y"
