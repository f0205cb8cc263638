"""``dvc.yaml`` against the code: every module a stage runs is a dependency, every param exists.

- A stage's command names its script (``stages/<name>.py``); the script's transitive colonpipe
  imports (module level and function level) must each lie under one of the stage's ``deps``,
  or a change there would not rerun the stage.
- Every ``params:`` key a stage lists must exist in ``params.yaml`` or in the params schema
  (a key the schema defaults is still a key: its default applies when it is omitted).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from colonpipe.params import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _stages() -> dict[str, dict]:
    """Every stage, ``foreach`` ones expanded (``${key}``/``${item.x}`` filled in)."""
    out = {}
    for name, stage in DVC["stages"].items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        for key, item in stage["foreach"].items():
            def fill(value, key=key, item=item):
                if isinstance(value, str):
                    value = value.replace("${key}", str(key))
                    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), value)
                if isinstance(value, list):
                    return [fill(v) for v in value]
                if isinstance(value, dict):
                    return {fill(k): fill(v) for k, v in value.items()}
                return value
            out[f"{name}@{key}"] = fill(stage["do"])
    return out


STAGES = _stages()


def _module_file(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path) -> set[str]:
    """Absolute colonpipe modules ``path`` imports anywhere (``from colonpipe import x`` -> ``colonpipe.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("colonpipe"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # submodules among the names
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("colonpipe"))
    return found


def _closure(script: Path) -> set[Path]:
    """Every colonpipe source file ``script`` reaches through imports (packages' ``__init__`` too)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for module in _imported(path):
            parts = module.split(".")
            for n in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                file = _module_file(".".join(parts[:n]))
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


def _script(stage: dict) -> Path | None:
    m = re.search(r"(stages/\w+\.py)", stage["cmd"])
    return ROOT / m.group(1) if m else None


@pytest.mark.parametrize("name", [n for n, s in STAGES.items() if _script(s) is not None])
def test_every_module_a_stage_runs_is_one_of_its_deps(name):
    stage = STAGES[name]
    deps = [ROOT / d for d in stage.get("deps", [])]
    missing = sorted(str(f.relative_to(ROOT)) for f in _closure(_script(stage))
                     if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"stage {name}: these modules run but are not in its deps: {missing}"


def _schema_has(section_cls: type, keys: list[str]) -> bool:
    cls = section_cls
    for i, key in enumerate(keys):
        if not dataclasses.is_dataclass(cls):
            return typing.get_origin(cls) is dict  # a mapping's keys are data, not schema
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if key not in fields:
            return False
        cls = typing.get_type_hints(cls)[key]
        origin = typing.get_origin(cls)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
            cls = next(a for a in typing.get_args(cls) if a is not type(None))
    return True


def _yaml_has(keys: list[str]) -> bool:
    node = PARAMS
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@pytest.mark.parametrize("name", list(STAGES))
def test_every_param_a_stage_lists_exists(name):
    keys = []
    for entry in STAGES[name].get("params", []):
        if isinstance(entry, dict):  # {file: [keys]}
            for file, listed in entry.items():
                assert (ROOT / file).is_file(), f"stage {name}: params file {file} does not exist"
                keys += listed
        else:
            keys.append(entry)
    unknown = [k for k in keys if not _yaml_has(k.split("."))
               and not (k.split(".")[0] in SECTIONS and _schema_has(SECTIONS[k.split(".")[0]], k.split(".")[1:]))]
    assert not unknown, f"stage {name}: params not in params.yaml nor the schema: {unknown}"


def test_the_contract_test_sees_a_missing_dep(tmp_path):
    """The closure is real: the infer stage reaches the image decoder through the worker."""
    closure = _closure(ROOT / "stages" / "infer.py")
    assert ROOT / "colonpipe" / "data" / "images.py" in closure
    assert ROOT / "colonpipe" / "params.py" in closure
