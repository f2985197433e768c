"""The docs stay true: every relative link resolves, every named test and module exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TEST_REFERENCE = re.compile(r"tests/(test_\w+\.py)::(\w+)")
MODULE_ROW = re.compile(r"^\| `(\w+)` \|", re.MULTILINE)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
        text = re.sub(r"[`*]", "", heading).strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_relative_link_resolves(doc: Path):
    text = doc.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = doc if not path else (doc.parent / path)
        if not file.exists() or (
            anchor and file.suffix == ".md" and anchor not in anchors(file.read_text())
        ):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_named_test_exists(doc: Path):
    missing = [
        f"tests/{file}::{name}"
        for file, name in TEST_REFERENCE.findall(doc.read_text())
        if not (ROOT / "tests" / file).is_file() or name not in defined_tests(ROOT / "tests" / file)
    ]
    assert missing == []


def test_every_module_in_the_readme_module_table_exists():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| module |") :]
    table = table[: table.index("\n\n")]
    modules = MODULE_ROW.findall(table)
    assert modules
    missing = [name for name in modules if not (ROOT / "src" / "finseq" / f"{name}.py").is_file()]
    assert missing == []
