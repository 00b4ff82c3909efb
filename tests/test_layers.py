"""The package's shape: imports point down the layers, and every module and class stays small
enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "evoengine"

# cli -> api -> engine -> {operators -> harness, archive, novelty, report -> lineage, llm, evaluation, store}
# -> records (records, problem, patches, config, errors). A module may import its own unit and any unit of a
# lower rank.
RANK = {
    "errors": 0, "files": 0, "lazy": 0, "config": 1, "problem": 1, "records": 2, "blocks": 2, "peers": 2, "patches": 3,
    "store": 3, "evaluation": 3, "llm": 3, "trackers": 3,
    "archive": 4, "harness": 4, "novelty": 4, "lineage": 4,
    "operators": 5, "report": 5, "status": 5,
    "engine": 6,
    "api": 7, "selfevolve": 7, "porting": 7, "baselines": 7,
    "cli": 8,
}  # fmt: skip


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_units(path: Path) -> set[str]:
    """The evoengine units `path` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders below evoengine/
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb to evoengine/, then follow the module path
                up = node.level - 1
                if up < depth:
                    continue  # inside the same unit
                names = (node.module or "").split(".") if node.module else [a.name for a in node.names]
                units.add(names[0])
            elif node.module and node.module.split(".")[0] == "evoengine":
                parts = node.module.split(".")
                units.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "evoengine" and len(parts) > 1:
                    units.add(parts[1])
    return units


def test_no_import_runs_up_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py" or path.name == "__main__.py":
            continue  # the public API's lazy re-exports
        unit = _unit(path)
        assert unit in RANK, f"{path}: add its unit {unit!r} to RANK in tests/test_layers.py"
        for target in _imported_units(path) - {unit}:
            if target in RANK and RANK[target] >= RANK[unit]:
                wrong.append(
                    f"{path.relative_to(REPO)} ({unit}, rank {RANK[unit]}) imports {target} (rank {RANK[target]})"
                )
    assert not wrong, "imports that run up or across the layers:\n" + "\n".join(wrong)


def test_no_module_over_400_lines_and_no_class_over_300():
    big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 400:
            big.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                big.append(f"{path.relative_to(REPO)}: class {node.name} has {node.end_lineno - node.lineno + 1} lines")
    assert not big, "split these:\n" + "\n".join(big)
