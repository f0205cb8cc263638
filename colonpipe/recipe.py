"""``colonpipe recipe FILE``: a recipe file (``recipes/*.yaml``) as validated ``dvc exp run -S`` overrides.

A recipe is a YAML mapping shaped like ``params.yaml`` holding only the keys it changes, e.g.
``recipes/colongpt.yaml`` (the real two-stage ColonGPT recipe, spec section 4). This command:

- checks that every key of the recipe is a key of ``params.yaml`` (no new keys, no typos);
- applies it to a copy of ``params.yaml`` and builds the result through the params schema
  (:func:`colonpipe.params.parse_params`): a bad value fails here, before anything runs;
- prints the ``dvc exp run -n <name> -S key=value ...`` command (one ``-S`` per leaf key; lists
  as a whole), shell-quoted, so ``eval "$(colonpipe recipe recipes/colongpt.yaml)"`` runs it.

    colonpipe recipe recipes/colongpt.yaml [--params params.yaml] [--name colongpt] [--queue]
"""

from __future__ import annotations

import argparse
import copy
import logging
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from colonpipe.params import ParamsError, parse_params

logger = logging.getLogger(__name__)

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")  # a Hydra string that needs no quotes


class RecipeError(ValueError):
    """A recipe that must not run; the message names the file and the key."""


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: cannot read YAML ({exc})") from None


def leaves(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of a nested mapping; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= leaves(value, f"{name}.")
        else:
            out[name] = value
    return out


def hydra_value(value: Any) -> str:
    """``value`` in the override grammar ``-S`` takes: null, true/false, numbers, [a,b], 'quoted'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        if _PLAIN.match(value) and value not in ("null", "true", "false"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise RecipeError(f"unsupported value {value!r} ({type(value).__name__})")


def _apply(raw: dict, key: str, value: Any) -> None:
    node, parts = raw, key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)


def recipe_overrides(recipe_path: Path, params_path: Path) -> list[str]:
    """The recipe's ``key=value`` overrides, after checking keys and values (module docstring)."""
    recipe, raw = read_yaml(recipe_path), read_yaml(params_path)
    if not isinstance(recipe, dict) or not recipe:
        raise RecipeError(f"{recipe_path}: expected a non-empty mapping shaped like {params_path}")
    flat, known = leaves(recipe), leaves(raw)
    unknown = [k for k in flat if k not in known and not any(k.startswith(f"{p}.") for p in known)]
    if unknown:
        raise RecipeError(f"{recipe_path}: keys that {params_path} does not have: {unknown}")
    applied = copy.deepcopy(raw)
    for key, value in flat.items():
        _apply(applied, key, value)
    try:
        parse_params(applied, source=f"{params_path} + {recipe_path}")
    except ParamsError as exc:
        raise RecipeError(str(exc)) from None
    return [f"{key}={hydra_value(value)}" for key, value in flat.items()]


def exp_run_command(overrides: list[str], *, name: str, queue: bool = False) -> str:
    """The shell command that runs the recipe as one DVC experiment."""
    args = ["dvc", "exp", "run", "-n", name, *(["--queue"] if queue else [])]
    for override in overrides:
        args += ["-S", override]
    return " ".join(shlex.quote(a) for a in args)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="colonpipe recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path, help="a recipe file, e.g. recipes/colongpt.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--name", default=None, help="experiment name (default: the recipe file stem)")
    parser.add_argument("--queue", action="store_true", help="queue it (dvc queue start runs it)")
    args = parser.parse_args(argv)
    try:
        overrides = recipe_overrides(args.recipe, args.params)
    except RecipeError as exc:
        logger.error("%s", exc)
        return 1
    print(exp_run_command(overrides, name=args.name or args.recipe.stem, queue=args.queue))
    return 0
