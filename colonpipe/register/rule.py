"""The promotion rule as a pure function, and the metrics it reads.

- ``load_metrics(paths)``: metrics JSON files -> ``{"<file stem>.<dotted path>": value}``
  (``metrics/test.json`` ``{"cls": {"accuracy": 0.9}}`` -> ``test.cls.accuracy``).
- ``decide(cfg, candidate, champion)``: with a champion, the candidate must beat it
  *strictly* on ``cfg.primary_metric`` and be worse on no guarded metric by more than its
  tolerance; with none (or one never measured on the primary metric), it must meet every
  floor (a floor is a maximum for a lower-is-better metric).
- Non-finite numbers (NaN, +-inf) are never trusted: a candidate with a non-finite primary,
  guarded or floored metric is not promoted, and the decision names those metrics; a
  champion whose primary metric is non-finite is judged like a first model (floors), so a
  finite candidate can replace it; a champion's non-finite guarded metric is not compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from colonpipe.params import RegisterParams
from colonpipe.tracking.logger import numeric_leaves


class RegistryError(RuntimeError):
    """A registry input or state problem; the message names the file or model."""


@dataclass(frozen=True)
class Comparison:
    """One number checked by the rule. ``rule``: "beat", "guard" or "floor"."""

    metric: str
    rule: str
    candidate: float
    reference: Optional[float]  # the champion's value, or the floor
    higher_is_better: bool
    tolerance: float = 0.0
    ok: bool = False
    note: str = ""  # why a number was not compared as usual (non-finite, missing)


# --------------------------------------------------------------------------- metrics
def load_metrics(paths: Sequence[str | Path]) -> dict[str, float]:
    """Read metrics JSON files into ``{"<stem>.<dotted path>": value}``."""
    metrics: dict[str, float] = {}
    for p in paths:
        path = Path(p)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"{path}: metrics file not found") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: expected a JSON object of metrics")
        metrics.update(numeric_leaves(data, path.stem))
    return metrics


def required_metrics(cfg: RegisterParams) -> list[str]:
    return sorted({cfg.primary_metric, *cfg.guards, *cfg.floors})


def check_metrics(cfg: RegisterParams, metrics: Mapping[str, float], *, source: str) -> None:
    """Raise ``RegistryError`` naming ``source`` if a metric the rule needs is missing."""
    missing = [m for m in required_metrics(cfg) if m not in metrics]
    if missing:
        raise RegistryError(
            f"{source}: metrics {missing} needed by params 'register' are missing "
            f"(available: {sorted(metrics)})"
        )


# --------------------------------------------------------------------------- the rule
def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def _finite(x: Optional[float]) -> bool:
    return x is not None and math.isfinite(x)


def _floors(cfg: RegisterParams, candidate: Mapping[str, float], why: str) -> tuple[bool, str, list[Comparison]]:
    """First-model judgement: every floor met (a maximum for lower-is-better metrics)."""
    hib = lambda m: cfg.higher_is_better.get(m, True)  # noqa: E731
    comps = []
    for m, floor in sorted(cfg.floors.items()):
        v = candidate[m]
        ok = _finite(v) and (v >= floor if hib(m) else v <= floor)
        comps.append(Comparison(m, "floor", v, floor, hib(m), ok=ok, note="" if _finite(v) else "non-finite"))
    failed = [c.metric for c in comps if not c.ok]
    reason = f"{why}: floors not met: {failed}" if failed else f"{why}: all floors met"
    return not failed, reason, comps


def _guard(m: str, tol: float, cand: float, ref: Optional[float], hib: bool) -> Comparison:
    """A guarded metric: the candidate may be worse than the champion by at most ``tol``."""
    if ref is None:  # guard added after the champion was registered: nothing to compare
        return Comparison(m, "guard", cand, None, hib, tol, ok=_finite(cand), note="champion lacks it")
    if not _finite(ref):  # the champion's number is broken: a finite candidate cannot regress from it
        return Comparison(m, "guard", cand, ref, hib, tol, ok=_finite(cand), note="champion non-finite")
    worse_by = (ref - cand) if hib else (cand - ref)
    return Comparison(m, "guard", cand, ref, hib, tol, ok=_finite(cand) and worse_by <= tol + 1e-12,
                      note="" if _finite(cand) else "non-finite")


def _fmt(values: Mapping[str, float], names: Sequence[str]) -> str:
    return ", ".join(f"{m}={values[m]}" for m in names)


def decide(
    cfg: RegisterParams, candidate: Mapping[str, float], champion: Optional[Mapping[str, float]]
) -> tuple[bool, str, list[Comparison]]:
    """Apply the promotion rule. ``champion`` None means there is none. Pure function."""
    hib = lambda m: cfg.higher_is_better.get(m, True)  # noqa: E731
    pm = cfg.primary_metric
    broken = [m for m in required_metrics(cfg) if not _finite(candidate[m])]
    why = "first model"
    if champion is not None and not _finite(champion.get(pm)):
        # never measured on this primary metric, or a broken number: judge like a first model
        why = f"champion's {pm} is {champion[pm]}, judged like a first model" if pm in champion else why
        champion = None
    if champion is None:
        ok, reason, comps = _floors(cfg, candidate, why)
    else:
        cand, ref = candidate[pm], champion[pm]
        primary = Comparison(pm, "beat", cand, ref, hib(pm), ok=_finite(cand) and _better(cand, ref, hib(pm)),
                             note="" if _finite(cand) else "non-finite")
        guards = sorted(cfg.guards.items())
        comps = [primary] + [_guard(m, tol, candidate[m], champion.get(m), hib(m)) for m, tol in guards]
        regressed = [c.metric for c in comps[1:] if not c.ok]
        ok = primary.ok and not regressed
        if not primary.ok:
            reason = f"{pm} {cand:.6g} does not beat champion {ref:.6g}"
        elif regressed:
            reason = f"guarded metric(s) regressed beyond tolerance: {regressed}"
        else:
            reason = f"{pm} {cand:.6g} beats champion {ref:.6g}; guards hold"
    if broken:  # whatever the comparisons say, a NaN or inf is never promoted
        return False, f"non-finite candidate metric(s), never promoted: {_fmt(candidate, broken)}", comps
    return ok, reason, comps
