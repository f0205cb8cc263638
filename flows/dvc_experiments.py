"""DVC experiments for sweeps: grid expansion and ``dvc exp show --json`` records.

Contract:
- ``expand_points(grid=..., points=...)``: a grid ``{key: [values]}`` (cartesian product, keys
  in the given order) and/or a list of override dicts -> one list of ``key=value`` strings
  per experiment (DVC's ``-S`` syntax).
- ``experiment_records(show)`` flattens ``dvc exp show --json`` (or ``ExpState.dumpd()``
  from DVC's API, the same data) into one ``ExpRecord``
  per named experiment: status, rev, flat params ``a.b.c`` and flat metrics
  ``<metrics file>:<dotted key>`` (the names ``dvc exp show --sort-by`` accepts).
- ``metric_value(metrics, metric)`` finds ``file:key`` exactly, or ``key`` in a single file.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from colonpipe.params import flatten

FINAL_STATES = {"success", "failed"}


@dataclass
class ExpRecord:
    """One DVC experiment as a sweep sees it."""

    name: str
    status: str  # queued | running | success | failed
    rev: Optional[str] = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None


def _value_text(value: Any) -> str:
    """A value in DVC's ``-S`` (Hydra) grammar: JSON, so strings stay strings (``"yes"``)."""
    return json.dumps(value)


def expand_points(
    grid: Optional[Mapping[str, Sequence[Any]]] = None,
    points: Optional[Sequence[Mapping[str, Any]]] = None,
) -> list[list[str]]:
    """Override lists, one per experiment: the grid's product first, then the explicit points."""
    out: list[list[str]] = []
    if grid:
        bad = [k for k, v in grid.items() if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not v]
        if bad:
            raise ValueError(f"sweep grid: values of {bad} must be non-empty lists")
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            out.append([f"{k}={_value_text(v)}" for k, v in zip(keys, combo)])
    for point in points or []:
        out.append([f"{k}={_value_text(v)}" for k, v in point.items()])
    if not out:
        raise ValueError("sweep: give a non-empty grid or list of points")
    if len({tuple(p) for p in out}) != len(out):
        raise ValueError(f"sweep: duplicate points in {out}")
    return out


def _flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for file, payload in (metrics or {}).items():
        for key, value in flatten((payload or {}).get("data") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{file}:{key}"] = float(value)
    return out


def _flat_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for payload in (params or {}).values():
        out.update(flatten((payload or {}).get("data") or {}))
    return out


def _iter_experiments(show: Iterable[Mapping[str, Any]]):
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                yield exp, rev


def experiment_records(show: Iterable[Mapping[str, Any]]) -> dict[str, ExpRecord]:
    """Named experiments in ``dvc exp show --json`` output, by name."""
    records: dict[str, ExpRecord] = {}
    for exp, rev in _iter_experiments(show):
        name = rev.get("name") or exp.get("name")
        if not name:
            continue
        executor = exp.get("executor") or {}
        data = rev.get("data") or {}
        records[name] = ExpRecord(
            name=name,
            status=(executor.get("state") or ("failed" if rev.get("error") else "success")).lower(),
            rev=rev.get("rev"),
            params=_flat_params(data.get("params") or {}),
            metrics=_flat_metrics(data.get("metrics") or {}),
            error=(rev.get("error") or {}).get("msg") if rev.get("error") else None,
        )
    return records


def metric_value(metrics: Mapping[str, float], metric: str) -> Optional[float]:
    """``metrics[metric]``; a bare ``key`` matches ``<file>:key`` when one file has it."""
    if metric in metrics:
        return metrics[metric]
    hits = [v for k, v in metrics.items() if k.split(":", 1)[-1] == metric]
    if len(hits) > 1:
        raise ValueError(f"metric {metric!r} is ambiguous: name it as <file>:{metric}")
    return hits[0] if hits else None


def best_experiment(records: Iterable[ExpRecord], metric: str, *, mode: str = "max") -> Optional[ExpRecord]:
    """The successful record with the best ``metric`` (``mode`` max or min); None if none has it."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    scored = [(metric_value(r.metrics, metric), r) for r in records if r.status == "success"]
    scored = [(v, r) for v, r in scored if v is not None]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda vr: vr[0])[1]
