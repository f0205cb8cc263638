"""Param overrides (DVC's ``-S key=value``) checked before anything is queued or run.

Contract:
- ``check_point(repo, overrides, point=...)`` returns the params mapping one override point
  (a sweep point, a pipeline run's ``params``) would run with, or raises ``OverrideError``
  whose message starts with ``point`` and names the key: ``sweep point 2
  (finetune.lr="x"): 1 problem(s):`` / ``finetune.lr: expected float, got 'x'``.
  Each override must be a plain ``key=value`` of Hydra's override grammar (what ``-S``
  takes), on a key that ``params.yaml`` already has. Rejected: a ``file:`` prefix (the flows
  override ``params.yaml`` only), add / delete / package forms (``+k=v``, ``~k``, ``k@p=v``),
  sweeps (``k=1,2``: one point is one experiment), ``${...}`` interpolation (it would read
  another key, past these checks) and anything that looks like an option (``-x``).
  The overrides are applied to a *copy* of ``params.yaml`` with DVC's own code, and when the
  file is a colonpipe params file the result is built through the section dataclasses
  (``colonpipe.params.check_point``); another project's file gets the key checks only.
- ``check_targets(repo, targets, what=...)``: stage names of ``dvc.yaml``; none may look
  like an option.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from colonpipe.params import ParamsError
from colonpipe.params import check_point as check_schema
from flows import dvc_cli

PARAMS_FILE = "params.yaml"


class OverrideError(ValueError):
    """An override that must not run; the message names the point and the key."""


def _key_problem(raw: Any, key: str) -> Optional[str]:
    """Why ``key`` (dotted; list items by index) is not a key of ``raw``, or None."""
    node, parts = raw, key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(map(str, node)) if isinstance(node, dict) else f"{type(node).__name__}, no keys"
            return f"{key}: not a key of {PARAMS_FILE} (keys of {where}: {known})"
    return None


def _syntax_problem(override: str) -> Optional[str]:
    """Why ``override`` is not a plain ``key=value`` on ``params.yaml``, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    key, eq, value = override.partition("=")
    if override.startswith("-"):
        return f"{override!r} looks like an option, not key=value"
    if ":" in key:
        return f"{override!r}: a file prefix is not allowed (overrides apply to {PARAMS_FILE} only)"
    if "${" in value:
        return f"{override!r}: ${{...}} interpolation is not allowed (give the value itself)"
    if override.startswith(("+", "~")) or "@" in key:
        return f"{override!r}: only key=value on an existing key is allowed (no +, ++, ~ or @package)"
    if not eq:
        return f"{override!r} is not key=value"
    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except OverrideParseException as exc:
        return f"{override!r}: {str(exc).splitlines()[0]}"
    if parsed.is_sweep_override():
        return f"{override!r}: a sweep (a,b / range / glob) is not one point; list the values as points"
    return None


def _overridden(params_path: Path, overrides: Sequence[str]) -> Any:
    """``params.yaml`` as it would be with ``overrides`` applied by DVC, on a temporary copy."""
    with tempfile.TemporaryDirectory(prefix="colonpipe-overrides-") as tmp:
        shutil.copyfile(params_path, Path(tmp) / PARAMS_FILE)
        try:
            dvc_cli.apply_overrides(tmp, overrides)
        except ValueError as exc:
            raise OverrideError(str(exc.__cause__ or exc)) from None
        return yaml.safe_load((Path(tmp) / PARAMS_FILE).read_text())


def check_point(repo: str | Path, overrides: Sequence[str], *, point: str) -> Any:
    """The params mapping ``overrides`` give (see the module doc); ``OverrideError`` if any is bad."""
    params_path = Path(repo) / PARAMS_FILE
    try:
        raw = yaml.safe_load(params_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise OverrideError(f"{point}: cannot read {params_path}: {exc}") from None
    problems = [p for o in overrides if (p := _syntax_problem(o))]
    problems += [p for o in overrides if not _syntax_problem(o) and (p := _key_problem(raw, o.partition("=")[0]))]
    if problems:
        raise OverrideError(f"{point}: " + f"\n{point}: ".join(problems))
    try:
        result = _overridden(params_path, overrides)
        check_schema(result, point=point)
    except OverrideError as exc:
        raise OverrideError(f"{point}: {exc}") from None
    except ParamsError as exc:
        raise OverrideError(str(exc)) from None
    return result


def check_targets(repo: str | Path, targets: Sequence[str], *, what: str = "targets") -> None:
    """Every target is a stage of ``dvc.yaml`` (``OverrideError`` / ``ValueError`` otherwise)."""
    optionish = [t for t in targets if not t or t.startswith("-")]
    if optionish:
        raise OverrideError(f"{what}: {optionish} look like options, not stage names")
    if targets:
        dvc_cli.stage_order(repo, targets)
