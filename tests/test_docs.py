"""The docs stay true: every relative link resolves, every named test exists, the rerun
table matches the DAG (the module map is checked by tests/test_structure.py)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TEST_REFERENCE = re.compile(r"tests/(test_\w+\.py)::(\w+)")


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


def documented_reruns() -> dict[str, set[str]]:
    """docs/pipeline.md's rerun table: each key (or `section.*`) → the stages it reruns."""
    text = (ROOT / "docs" / "pipeline.md").read_text()
    section = text[text.index("## Which stages a parameter reruns") :]
    table = {}
    for keys, reruns in re.findall(r"^\| (`.+?) \| (.+?) \|$", section, re.MULTILINE):
        stages = set() if reruns.startswith("nothing") else set(reruns.split(", "))
        for key in re.findall(r"`([\w.*]+)`", keys):
            table[key] = stages
    return table


def dag_downstream() -> dict[str, set[str]]:
    """Each stage and every stage downstream of it, from `dvc dag --dot`."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dot = subprocess.run(
        [sys.executable, "-m", "dvc", "dag", "--dot"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    edges = re.findall(r'"?([\w.-]+)"?\s*->\s*"?([\w.-]+)"?', dot)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    closure = {stage: {stage} for stage in stages}
    changed = True
    while changed:
        changed = False
        for source, target in edges:
            for reached in closure.values():
                if source in reached and target not in reached:
                    reached.add(target)
                    changed = True
    return closure


@pytest.mark.slow
def test_the_rerun_table_matches_dvc_yaml_and_the_dag():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = [f"{section}.{key}" for section, values in params.items() for key in values]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    downstream = dag_downstream()
    expected = {}
    for key in keys:
        reruns = set()
        for name, stage in stages.items():
            listed = stage.get("params", [])
            if key in listed or key.split(".")[0] in listed:
                reruns |= downstream[name]
        expected[key] = reruns
    documented = documented_reruns()
    table = {key: documented.get(key, documented.get(f"{key.split('.')[0]}.*")) for key in keys}
    assert table == expected
