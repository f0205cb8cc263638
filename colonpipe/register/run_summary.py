"""``colonpipe summary``: the headline numbers of the last pipeline run and the registry decision.

Reads only files the pipeline writes (``metrics/{val,test}.json``, ``registry.json``), so it
works without MLflow running. Exit code 1 if the metrics are missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEADLINE = {
    "cls": ("accuracy", "baseline_accuracy"),
    "reg": ("accuracy", "baseline_accuracy"),
    "rec": ("avg_iou", "baseline_avg_iou", "acc_iou_0.5"),
    "cap": ("bleu4", "rouge_l", "cider"),
}


def format_metrics(split: str, metrics: dict) -> list[str]:
    """One line per task: ``test  cls  accuracy=0.912  baseline_accuracy=0.25``."""
    lines = []
    for task, keys in HEADLINE.items():
        values = metrics.get(task) or {}
        shown = [f"{k}={values[k]:.4f}" for k in keys if isinstance(values.get(k), (int, float))]
        if shown:
            lines.append(f"  {split:<5} {task:<4} " + "  ".join(shown) + f"  (n={values.get('n', '?')})")
    return lines


def _number(value) -> str:
    """4 decimals; registry.json writes a non-finite number as a string ("nan", "inf")."""
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def format_decision(decision: dict) -> list[str]:
    """The registry decision with the numbers it compared."""
    verdict = "PROMOTED to champion" if decision.get("promoted") else "not promoted"
    lines = [f"  {decision.get('model_name')} v{decision.get('candidate_version')}: {verdict}"
             f" - {decision.get('reason')}"]
    for c in decision.get("comparisons", []):
        ref = "-" if c.get("reference") is None else _number(c["reference"])
        note = f" ({c['note']})" if c.get("note") else ""
        lines.append(f"    {c['rule']:<5} {c['metric']}: candidate {_number(c['candidate'])} vs {ref}"
                     f"  {'ok' if c.get('ok') else 'FAIL'}{note}")
    lines.append(f"  champion -> v{decision.get('champion_after')}, previous -> v{decision.get('previous_after')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="colonpipe summary", description=__doc__)
    ap.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    ap.add_argument("--registry", type=Path, default=Path("registry.json"))
    args = ap.parse_args(argv)
    lines = ["Evaluation (metrics/*.json):"]
    found = False
    for split in ("val", "test"):
        path = args.metrics_dir / f"{split}.json"
        if path.is_file():
            found = True
            lines += format_metrics(split, json.loads(path.read_text()))
    if not found:
        print(f"colonpipe summary: no metrics under {args.metrics_dir}/ (run `dvc repro` first)")
        return 1
    if args.registry.is_file():
        decisions = json.loads(args.registry.read_text()).get("decisions", [])
        if decisions:
            lines += ["Registry decision (registry.json, last entry):"] + format_decision(decisions[-1])
    print("\n".join(lines))
    return 0
