"""The promotion rule as a pure function, and the metrics it reads.

- ``load_metrics(paths)``: metrics JSON files -> ``{"<file stem>.<dotted path>": value}``
  (``metrics/test.json`` ``{"cls": {"accuracy": 0.9}}`` -> ``test.cls.accuracy``).
- ``decide(cfg, candidate, champion)``: with a champion, the candidate must beat it
  *strictly* on ``cfg.primary_metric`` and be worse on no guarded metric by more than its
  tolerance; with none (or one never measured on the primary metric), it must meet every
  floor (a floor is a maximum for a lower-is-better metric).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from colonpipe.params import RegisterParams


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



# --------------------------------------------------------------------------- metrics
def flat_numbers(obj: Any, prefix: str) -> dict[str, float]:
    """Numeric leaves of nested dicts as dotted keys (bools and non-numbers dropped)."""
    if isinstance(obj, Mapping):
        out: dict[str, float] = {}
        for k, v in obj.items():
            out.update(flat_numbers(v, f"{prefix}.{k}"))
        return out
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {prefix: float(obj)}
    return {}


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
        metrics.update(flat_numbers(data, path.stem))
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


def decide(
    cfg: RegisterParams, candidate: Mapping[str, float], champion: Optional[Mapping[str, float]]
) -> tuple[bool, str, list[Comparison]]:
    """Apply the promotion rule. ``champion`` None means there is none. Pure function."""
    hib = lambda m: cfg.higher_is_better.get(m, True)  # noqa: E731
    pm = cfg.primary_metric
    if champion is not None and pm not in champion:
        champion = None  # never measured on this primary metric: judge like a first model
    if champion is None:
        comps = [
            Comparison(m, "floor", candidate[m], floor, hib(m),
                       ok=candidate[m] >= floor if hib(m) else candidate[m] <= floor)
            for m, floor in sorted(cfg.floors.items())
        ]
        failed = [c.metric for c in comps if not c.ok]
        reason = f"first model: floors not met: {failed}" if failed else "first model: all floors met"
        return not failed, reason, comps
    primary = Comparison(pm, "beat", candidate[pm], champion[pm], hib(pm),
                         ok=_better(candidate[pm], champion[pm], hib(pm)))
    comps = [primary]
    for m, tol in sorted(cfg.guards.items()):
        ref = champion.get(m)
        if ref is None:  # guard added after the champion was registered: nothing to compare
            comps.append(Comparison(m, "guard", candidate[m], None, hib(m), tol, ok=True))
            continue
        worse_by = (ref - candidate[m]) if hib(m) else (candidate[m] - ref)
        comps.append(Comparison(m, "guard", candidate[m], ref, hib(m), tol, ok=worse_by <= tol + 1e-12))
    if not primary.ok:
        return False, f"{pm} {candidate[pm]:.6g} does not beat champion {champion[pm]:.6g}", comps
    broken = [c.metric for c in comps[1:] if not c.ok]
    if broken:
        return False, f"guarded metric(s) regressed beyond tolerance: {broken}", comps
    return True, f"{pm} {candidate[pm]:.6g} beats champion {champion[pm]:.6g}; guards hold", comps
