"""The package's shape: modules small enough to read, imports that follow the data, each
rule and path defined once, and the dependencies pyproject.toml declares.

These read the source (ast), never run it, so they are fast and fail with the module and
line to look at.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, reproduced_project

from finseq import paths

PACKAGE = ROOT / "src" / "finseq"
MAX_LINES = 400


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def imported_modules(tree: ast.AST, importer: str) -> set[str]:
    """Every module an `import` or `from ... import` anywhere in `tree` names: top level,
    inside functions and under `if TYPE_CHECKING:` alike. `from finseq import x` names
    finseq.x when that is a module."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            )
    return found


def load_time_imports(tree: ast.Module) -> set[str]:
    """The modules a module imports when it is imported: its top-level import statements,
    not those inside functions or under `if TYPE_CHECKING:`."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES}


def finseq_imports(name: str) -> set[str]:
    return {
        module
        for module in imported_modules(TREES[name], name)
        if module in MODULES and module not in (name, "finseq")
    }


def test_no_module_is_longer_than_one_sitting():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_no_library_module_imports_a_stage():
    library = [name for name in MODULES if not name.startswith("finseq.stages")]
    offenders = {
        name: sorted(m for m in finseq_imports(name) if m.startswith("finseq.stages"))
        for name in library
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle_even_under_type_checking():
    graph = {name: finseq_imports(name) for name in MODULES}
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_prediction_and_the_model_card_import_no_training_machinery():
    """Importing finseq predict and finseq info loads no training, fold or distributed code,
    directly or through another finseq module (a function may import some lazily: the
    sys.modules of a real run are checked in tests/test_predict.py)."""
    training = {"finseq.fit", "finseq.folds", "finseq.distributed", "finseq.pipeline"}
    reached, frontier = set(), ["finseq.predict", "finseq.card", "finseq.cli"]
    while frontier:
        name = frontier.pop()
        if name in reached:
            continue
        reached.add(name)
        frontier.extend(load_time_imports(TREES[name]) - {name})
    assert reached & training == set()


def code_lines(pattern: str) -> list[str]:
    """`module:line` of every source line matching `pattern`, outside comments."""
    hits = []
    for name, path in MODULES.items():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(pattern, code):
                hits.append(f"{name}:{number}")
    return hits


def test_the_label_to_class_shift_is_written_once():
    """labels.to_classes is the one place a -1/0/1 label becomes a class index."""
    shifts = code_lines(r"(astype\(np\.int64\)|to_numpy\(\)|labels\[\w+\]) \+ 1\b")
    assert len(shifts) == 1 and shifts[0].startswith("finseq.labels:")


def test_every_auto_is_resolved_in_runtime():
    """A setting compared with "auto" is being resolved: only finseq.runtime does that."""
    resolved = code_lines(r"[=!]= ?\"auto\"")
    assert resolved and all(hit.startswith("finseq.runtime:") for hit in resolved), resolved


def string_constants(tree: ast.AST) -> list[tuple[str, int]]:
    return [
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


PIPELINE_PATHS = {
    value for name, value in vars(paths).items() if name.isupper() and isinstance(value, str)
}


def test_each_pipeline_path_is_spelled_once():
    spelled = [
        f"{name}:{line} {value!r}"
        for name, tree in TREES.items()
        if name != "finseq.paths"
        for value, line in string_constants(tree)
        if value in PIPELINE_PATHS
    ]
    assert spelled == []


def test_dvc_yaml_names_the_paths_the_code_writes():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

    def named(entries) -> set[str]:
        return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}

    outs = set().union(*(named(stage.get("outs", [])) for stage in stages.values()))
    outs |= set().union(*(named(stage.get("metrics", [])) for stage in stages.values()))
    outs |= set().union(*(named(stage.get("plots", [])) for stage in stages.values()))
    written = PIPELINE_PATHS - {paths.PARAMS_FILE, paths.RAW_DIR}
    assert all(any(out == path or out.startswith(f"{path}/") for path in written) for out in outs)
    assert all(any(out == path or out.startswith(f"{path}/") for out in outs) for path in written)
    assert paths.RAW_DIR in named(stages["prepare"]["deps"])


def third_party_imports() -> dict[str, str]:
    """Top-level third-party module → the first finseq module importing it."""
    found: dict[str, str] = {}
    for name, tree in TREES.items():
        for module in sorted(imported_modules(tree, name)):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in ("finseq", "__future__"):
                continue
            found.setdefault(top, name)
    return found


def normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalise(re.split(r"[<>=!~ ;\[]", spec)[0]) for spec in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: importer
        for module, importer in third_party_imports().items()
        if not {normalise(d) for d in distributions.get(module, [module])} & declared
    }
    assert third_party_imports(), "the scan found no third-party import at all"
    assert undeclared == {}


@pytest.mark.parametrize("module", ["torch", "ruamel", "pydantic_core"])
def test_the_dependency_scan_sees_imports_through_their_distribution(module):
    assert module in third_party_imports()


def module_map() -> dict[str, str]:
    """docs/development.md's module map: each module named in a row → its imports cell."""
    text = (ROOT / "docs" / "development.md").read_text()
    table = text[text.index("| module | its one job | may import (finseq) |") :]
    table = table[: table.index("\n\n")]
    rows = {}
    for line in table.splitlines()[2:]:
        names, _, imports = (cell.strip() for cell in line.strip("|").split(" | "))
        for name in re.findall(r"`([\w/*]+)`", names):
            rows[name] = imports
    return rows


def test_the_module_map_names_every_module_and_only_what_each_imports():
    documented = module_map()
    modules = {name.removeprefix("finseq.") for name in MODULES if "stages" not in name}
    modules.discard("finseq")
    assert set(documented) - {"stages/*"} == modules
    for name, cell in documented.items():
        if name not in modules or cell.startswith("not "):
            continue
        allowed = set(re.findall(r"\b[a-z_]+\b", cell)) - {"lazy", "also", "train"}
        assert finseq_imports(f"finseq.{name}") <= {f"finseq.{m}" for m in allowed}, name


def edit_source(project_path: Path, module: str, old: str, new: str) -> None:
    source = project_path / "src" / "finseq" / module
    text = source.read_text()
    assert old in text, f"{module} no longer holds {old!r}"
    source.write_text(text.replace(old, new, 1))


def changed_stages(project) -> set[str]:
    return set(json.loads(project.run("dvc", "status", "--json").stdout or "{}"))


@pytest.mark.slow
def test_rewording_a_note_retrains_nothing_and_editing_the_fit_loop_does(
    reproduced_template, tmp_path
):
    """dvc.yaml lists for each stage the code that decides its outputs (`dvc status` is what
    `dvc repro` reruns): a prepare note or a window-stage message reruns its own stage at
    most, the version rule of predict nothing, evaluate's code evaluate alone, and the fit
    loop train."""
    project = reproduced_project(reproduced_template, tmp_path / "repo")
    assert changed_stages(project) == set()
    edit_source(project.path, "summary.py", "it does not cover that period", "no bars there")
    edit_source(project.path, "window_sets.py", "lower window.seq_len", "shorten window.seq_len")
    assert changed_stages(project) == {"prepare", "window"}
    edit_source(project.path, "versions.py", "retrain the model", "train the model again")
    assert changed_stages(project) == {"prepare", "window"}
    edit_source(project.path, "scoring.py", "windows it was trained on", "windows it learned from")
    assert changed_stages(project) == {"prepare", "window", "evaluate"}
    edit_source(
        project.path,
        "fit.py",
        "epochs_without_gain += 1",
        "epochs_without_gain = epochs_without_gain + 1",
    )
    assert changed_stages(project) == {"prepare", "window", "evaluate", "train"}
