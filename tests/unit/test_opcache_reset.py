"""The `fcgi` strategy's PHP script, run by PHP itself (the CLI, opcache on) against an
opcache filled to a known degree: it resets only above `reset_above`, and says which."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from atomicdeploy import shell

# The smallest opcache PHP accepts, so that a few generated scripts fill a known share of it.
SMALL = [
    "-d", "opcache.enable_cli=1", "-d", "opcache.memory_consumption=8",
    "-d", "opcache.interned_strings_buffer=1",
    "-d", "opcache.file_update_protection=0",  # the scripts are new: cache them anyway
]  # fmt: skip


def run_reset(tmp_path: Path, reset_above: int, scripts: int, *opts: str, size: int = 400) -> str:
    """Cache `scripts` generated scripts of `size` lines (400: about 25 KiB of opcache),
    then run the strategy's script; its output."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    lines = ["<?php"]
    for i in range(scripts):
        f = tmp_path / f"s{i}.php"
        body = "\n".join(f"$a[] = 'line {j} of script {i}';" for j in range(size))
        f.write_text(f"<?php function f{i}() {{ $a = []; {body} return $a; }}\n")
        lines.append(f"include {str(f)!r};")
    (tmp_path / "reset.php").write_text(shell.opcache_reset_php(reset_above))
    lines.append(f"include {str(tmp_path / 'reset.php')!r};")
    (tmp_path / "main.php").write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["php", *SMALL, *opts, str(tmp_path / "main.php")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def used(out: str) -> float:
    return float(out.rsplit(" at ", 1)[1].split("%")[0])


def test_a_roomy_opcache_is_kept_and_a_full_one_is_reset(tmp_path):
    roomy = run_reset(tmp_path / "a", 75, 1)
    assert roomy.startswith(f"{shell.OPCACHE_OK} kept at "), roomy
    full = run_reset(tmp_path / "b", 75, 60, size=2000)
    assert full.startswith(f"{shell.OPCACHE_OK} reset at "), full
    assert used(full) > 75 >= used(roomy)


def test_script_slots_count_as_well_as_memory(tmp_path):
    """150 one-line scripts hardly fill 64 MiB, but most of 200 slots (PHP rounds up to
    223): a full table of scripts, too, stops opcache caching the next release."""
    memory = "opcache.memory_consumption=64"
    assert "kept" in run_reset(tmp_path / "a", 50, 150, "-d", memory, size=1)
    slots = "opcache.max_accelerated_files=200"
    out = run_reset(tmp_path / "b", 50, 150, "-d", memory, "-d", slots, size=1)
    assert out.startswith(f"{shell.OPCACHE_OK} reset at "), out


@pytest.mark.parametrize("reset_above", [0, 99])
def test_zero_always_resets_and_99_keeps_a_small_cache(tmp_path, reset_above):
    out = run_reset(tmp_path, reset_above, 2)
    verb = "reset" if reset_above == 0 else "kept"
    assert out.startswith(f"{shell.OPCACHE_OK} {verb} at "), out


def test_a_disabled_opcache_get_status_still_resets_and_says_so(tmp_path):
    """Hardened hosts list opcache_get_status in disable_functions: the script cannot tell
    how full the opcache is, so it resets, as it did at every deploy before."""
    out = run_reset(tmp_path, 75, 1, "-d", "disable_functions=opcache_get_status")
    assert out == f"{shell.OPCACHE_OK} reset (its use is unknown)"


def test_opcache_off_is_reported_as_a_failure(tmp_path):
    out = run_reset(tmp_path, 75, 1, "-d", "opcache.enable_cli=0")
    assert out == "opcache_reset() failed or opcache is off"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            f"{shell.OPCACHE_OK} kept at 12.3% in use",
            f"{shell.NOTE_MARKER}opcache kept at 12.3% in use",
        ),
        (
            f"{shell.OPCACHE_OK} reset (its use is unknown)",
            f"{shell.NOTE_MARKER}opcache reset (its use is unknown)",
        ),
        (shell.OPCACHE_OK, ""),
        ("opcache_reset() failed or opcache is off", f"{shell.WARN_MARKER}opcache reset (fcgi)"),
    ],
)
def test_what_the_script_decided_reaches_the_hosts_report(tmp_path, answer, said):
    """The go-live script turns php-fpm's answer into a note for the host's report, or a
    warning; the switch's reader sorts them out of the rest of its output."""
    from atomicdeploy.steps import switch

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "cgi-fcgi"
    fake.write_text(f"#!/bin/sh\nprintf 'Content-type: text/html\\r\\n\\r\\n%s' '{answer}'\n")
    fake.chmod(0o755)
    (tmp_path / ".dep").mkdir()
    script = shell.opcache_reset(
        "fcgi", socket="/run/php.sock", dep_dir=str(tmp_path / ".dep"), token="t", reset_above=75
    )
    assert script is not None
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=True
    ).stdout
    assert out.startswith(said) and (said or out == ""), out
    done = switch.switched(out + "releases/r1\n", "releases/r1", "web1")
    if said.startswith(shell.NOTE_MARKER):
        assert done.notes == (said[len(shell.NOTE_MARKER) :],) and done.warnings == ()
    elif said:
        assert done.warnings and done.notes == ()
    assert list((tmp_path / ".dep").iterdir()) == []  # the script is removed again
