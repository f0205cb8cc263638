"""The package layers: every colonpipe import points down, and imports live at module level.

Ranks (a module may import a lower rank or its own package, never a higher rank or a sibling
package of the same rank)::

    0  atomic, hashing, coloninst, taxonomy, projector_types    leaves (standard library only)
    1  params
    2  tracking
    3  data, model
    4  train, infer
    5  evaluate
    6  register
    7  cli, stage_cli
    8  stages/, flows/                                          glue

A function-level import of a colonpipe module is allowed only where it defers a heavy
dependency (torch, transformers, MLflow's model flavours) that the importing module must not
pay for when it is imported: each such import is listed in ``LAZY`` with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANKS = {
    "colonpipe.atomic": 0, "colonpipe.hashing": 0, "colonpipe.coloninst": 0, "colonpipe.taxonomy": 0,
    "colonpipe.projector_types": 0,
    "colonpipe.params": 1,
    "colonpipe.tracking": 2,
    "colonpipe.data": 3, "colonpipe.model": 3,
    "colonpipe.train": 4, "colonpipe.infer": 4,
    "colonpipe.evaluate": 5,
    "colonpipe.register": 6,
    "colonpipe.cli": 7, "colonpipe.stage_cli": 7, "colonpipe.__main__": 7, "colonpipe": 7,
    "stages": 8, "flows": 8, "benchmarks": 8,
}
LAZY = {  # (importing module, imported module): why it is imported inside a function
    ("colonpipe.infer.worker", "colonpipe.infer.generate"): "the runner imports worker specs without torch",
    ("colonpipe.infer.worker", "colonpipe.infer.load"): "the runner imports worker specs without torch",
    ("colonpipe.register.pyfunc", "colonpipe.infer.load"): "MLflow imports the serving entry before load_context",
    ("colonpipe.register.pyfunc", "colonpipe.infer.generate"): "MLflow imports the serving entry before load_context",
    ("colonpipe.register.model_log", "colonpipe.register.pyfunc"): "pyfunc pulls mlflow.pyfunc; the card and the registry read constants first",
    ("colonpipe.register.model_log", "colonpipe.infer.load"): "torch only when a model is really logged",
    ("colonpipe.register.model_log", "colonpipe.model.merge_adapter"): "torch only when a model is really logged",
    ("colonpipe.register.registry", "colonpipe.infer.load"): "`colonpipe registry` and the rule run without torch",
    ("colonpipe.register.registry", "colonpipe.register.model_log"): "`colonpipe registry` and the rule run without torch",
    ("colonpipe.register.registry", "colonpipe.register.cards"): "`colonpipe registry` and the rule run without torch",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _rank_key(module: str) -> str | None:
    """The ``RANKS`` key a module belongs to (its package, or itself for a leaf)."""
    parts = module.split(".")
    for n in (2, 1):
        key = ".".join(parts[:n])
        if key in RANKS:
            return key
    return None


def _imports(tree: ast.Module):
    """``(module imported, line, inside a function?)`` of every absolute project import."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module] if child.module != "colonpipe" else [f"colonpipe.{a.name}" for a in child.names]
                for name in names:
                    yield name, child.lineno, in_function
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            yield from walk(child, nested)
    yield from walk(tree, False)


def _sources():
    for folder in ("colonpipe", "stages", "flows"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _edges():
    for path in _sources():
        importer = _module_name(path)
        for imported, line, lazy in _imports(ast.parse(path.read_text(), str(path))):
            if _rank_key(imported) is not None and imported.split(".")[0] in ("colonpipe", "flows", "stages"):
                yield path, importer, imported, line, lazy


def test_every_import_points_down_a_layer():
    wrong = []
    for path, importer, imported, line, _ in _edges():
        src, dst = _rank_key(importer), _rank_key(imported)
        if src == dst or RANKS[src] == 8:
            continue  # own package; glue may import any library layer (and flows its own helpers)
        if RANKS[dst] >= RANKS[src]:
            side = "up" if RANKS[dst] > RANKS[src] else "sideways"
            wrong.append(f"{path.relative_to(ROOT)}:{line}: {importer} ({src}, rank {RANKS[src]}) imports "
                         f"{imported} ({dst}, rank {RANKS[dst]}): {side}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_function_level_imports_only_defer_heavy_dependencies():
    found = [(path, importer, imported, line) for path, importer, imported, line, lazy in _edges()
             if lazy and importer.startswith("colonpipe")]
    unlisted = [f"{p.relative_to(ROOT)}:{line}: {a} imports {b} inside a function"
                for p, a, b, line in found if (a, b) not in LAZY and (a, "*") not in LAZY]
    assert not unlisted, "function-level imports without a reason in LAZY:\n" + "\n".join(unlisted)
    stale = set(LAZY) - {(a, b) for _, a, b, _ in found} - {(a, "*") for _, a, _, _ in found}
    assert not stale, f"LAZY lists imports that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("leaf", ["colonpipe.coloninst", "colonpipe.params", "colonpipe.atomic",
                                  "colonpipe.hashing", "colonpipe.taxonomy", "colonpipe.projector_types"])
def test_leaves_import_no_project_module_above_them(leaf):
    path = ROOT / (leaf.replace(".", "/") + ".py")
    above = [name for name, _, _ in _imports(ast.parse(path.read_text()))
             if name.startswith("colonpipe") and RANKS[_rank_key(name)] >= RANKS[leaf] and name != leaf]
    assert not above, f"{leaf} imports {above}"
