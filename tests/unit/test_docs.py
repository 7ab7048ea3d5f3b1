"""The README and docs/ stay true to the code: size, links, the inventory reference, the
example inventories, the fault table's markers. No network, no hosts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from atomicdeploy.errors import ConfigError
from atomicdeploy.inventory import KEYS
from atomicdeploy.inventory.loader import parse
from tests import faults

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_CHARS = 15_000

FENCE = re.compile(r"^(```|~~~)(\w*)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
CELL = re.compile(r"(?<!\\)\|")


def text_of(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The text without its fenced code blocks."""
    return FENCE.sub("", text)


def blocks(text: str, lang: str) -> list[str]:
    return [m.group(3) for m in FENCE.finditer(text) if m.group(2) == lang]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(text_of(page)).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_the_readme_stays_short():
    size = len(text_of(README))
    assert size <= MAX_README_CHARS, f"README.md has {size} characters; move detail into docs/"


def test_the_readme_keeps_the_test_command_ci_runs():
    readme = text_of(README)
    assert "scripts/test    # set up, lint, and run the whole test suite" in readme
    assert "CI runs `.ci/run`, which is `scripts/test -q`." in readme
    assert "scripts/test -q" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in LINK.findall(prose(text_of(page))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, broken


def test_the_readme_links_every_docs_page():
    readme = text_of(README)
    missing = [p.name for p in DOCS.glob("*.md") if f"(docs/{p.name}" not in readme]
    assert not missing, missing


# --- docs/configuration.md: the reference of every inventory key ------------------------------


def key_table() -> dict[str, str]:
    """Key name -> its default cell, from the table headed `| key | default | meaning |`."""
    lines = text_of(DOCS / "configuration.md").splitlines()
    start = lines.index("| key | default | meaning |")
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in CELL.split(line.strip())[1:-1]]
        names = re.findall(r"`([^`]+)`", cells[0])
        assert names, f"a row without a key: {line}"
        for name in names:
            assert name not in rows, f"{name} is in the table twice"
            rows[name] = cells[1]
    return rows


def test_the_key_table_documents_every_inventory_key_and_no_other():
    documented = set(key_table())
    assert sorted(set(KEYS) - documented) == [], "keys missing from docs/configuration.md"
    assert sorted(documented - set(KEYS)) == [], "unknown keys in docs/configuration.md"


def shown(value) -> list[str] | None:
    """How a simple default is written in the table; None when it is not simple."""
    if isinstance(value, bool):
        return ["`true`" if value else "`false`"]
    if isinstance(value, int):
        return [f"`{value}`"]
    if isinstance(value, str):
        return ['`""`'] if value == "" else [f"`{value}`", f'`"{value}"`']
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return [f"`[{', '.join(value)}]`"]
    if value == {}:
        return ["`{}`"]
    return None


def test_the_key_table_shows_each_simple_default_as_the_code_has_it():
    table = key_table()
    checked, wrong = 0, []
    for name, key in KEYS.items():
        expected = shown(key.default)
        if expected is None:
            continue
        checked += 1
        if not any(e in table[name] for e in expected):
            wrong.append(f"{name}: the table says {table[name]!r}, the code {key.default!r}")
    assert not wrong, wrong
    assert checked >= 30


# --- example inventories -------------------------------------------------------------------


def quick_start() -> str:
    readme = text_of(README)
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in blocks(section, "yaml") if re.search(r"^hosts:", b, re.M)]
    return block


def inventories() -> list[tuple[str, str]]:
    out = [("README quick start", quick_start())]
    for page in sorted(DOCS.glob("*.md")):
        for i, block in enumerate(blocks(text_of(page), "yaml")):
            out.append((f"{page.name} yaml block {i + 1}", block))
    return out


@pytest.mark.parametrize("where, block", inventories(), ids=[w for w, _ in inventories()])
def test_every_example_inventory_loads(where, block):
    """A block with `hosts:` is a whole inventory; a `config:` fragment is checked with one
    host added. Both must load as they are written."""
    text = block if re.search(r"^hosts:", block, re.M) else block + "hosts:\n  h1: {}\n"
    if not re.search(r"^\s*deploy_path:", text, re.M):
        text = text.replace("hosts:\n  h1: {}", "hosts:\n  h1: {deploy_path: /srv/app}")
    try:
        inventory = parse(text)
    except ConfigError as exc:
        pytest.fail(f"{where} does not load: {exc}")
    assert inventory.hosts


def test_each_framework_has_a_complete_inventory():
    page = text_of(DOCS / "hooks-and-recipes.md")
    examples = page.split("## Examples per framework", 1)[1].split("\n## ", 1)[0]
    recipes = {"Laravel": "laravel", "Symfony": "symfony", "Plain PHP with composer": "composer"}
    for framework, recipe in recipes.items():
        section = examples.split(f"### {framework}\n", 1)[1].split("\n### ", 1)[0]
        (block,) = blocks(section, "yaml")
        assert re.search(r"^hosts:", block, re.M), framework
        inventory = parse(block)
        assert list(inventory.stages) == ["prod"], framework
        assert all(h.recipes == (recipe,) for h in inventory.hosts), framework


def test_the_quick_start_deploys_laravel_to_three_hosts_from_a_repository():
    inventory = parse(quick_start())
    assert inventory.stages == {"prod": ("web1", "web2", "web3")}
    host = inventory.hosts[0]
    assert host.repository and host.recipes == ("laravel",)
    assert host.shared_files == (".env",)


# --- the fault table ---------------------------------------------------------------------------


def test_the_fault_table_lives_in_docs_faults_and_its_writer_fills_it(tmp_path):
    page = text_of(DOCS / "faults.md")
    assert page.count(faults.START) == 1 and page.count(faults.END) == 1
    assert faults.START not in text_of(README)
    copy = tmp_path / "faults.md"
    shutil.copy(DOCS / "faults.md", copy)
    faults.write_into(copy, "| a | b | 1 | 0 | c |\n")
    head, rest = text_of(copy).split(faults.START, 1)
    assert head == page.split(faults.START, 1)[0]
    assert rest.split(faults.END, 1)[1] == page.split(faults.END, 1)[1]
    assert rest.startswith("\n| a | b | 1 | 0 | c |\n" + faults.END)


# --- no development history in the product -----------------------------------------------------

HISTORY = re.compile(r"\bseed\s+\d+\b|\bissues?\s+#?[1-9][0-9]?\b", re.I)


def product_files() -> list[Path]:
    return [*PAGES, *sorted((ROOT / "atomicdeploy").rglob("*.py"))]


def test_no_development_history_in_the_product():
    found = [
        f"{path.relative_to(ROOT)}: {m.group(0)!r}"
        for path in product_files()
        for m in HISTORY.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, found
