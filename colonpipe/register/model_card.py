"""The Hugging Face model card (``README.md``) of a model folder, from what the run recorded.

``write_model_card(model_dir, *, lineage, metrics, decision, params)`` writes
``model_dir/README.md`` (atomically): YAML front matter the Hub reads (``license``, ``tags``,
``base_model``, ``pipeline_tag``, ``library_name``, ``model-index`` with every headline metric
at full precision) and a body with the metrics next to their baselines, per dataset, the
registry decision, the lineage, intended use and limits, and the params. It depends only on its
arguments and the folder's own ``config.json``: no clock, no environment, so the same inputs give
the same bytes. The folder is then ready for ``huggingface_hub.upload_folder`` / ``push_to_hub``.

Inputs, in the shapes colonpipe writes them (every key optional):
- ``lineage``: ``{"git": {"commit", "dirty"}, "inputs": {path: {"hash", "algo", "source"}},
  "inputs_digest": str, "ingest": <data/interim/ingest_report.json>}``: a stage's
  ``colonpipe.tracking.lineage.stage_lineage`` record plus the ingest report.
- ``metrics``: ``{split: {task: block}}`` as in ``metrics/{split}.json`` (``colonpipe.evaluate``);
  a block may carry ``by_dataset`` from ``plots/{split}/scores.json`` (:func:`read_metrics`).
- ``decision``: a ``registry.json`` decision (``Decision.to_json()``), or None when unregistered.
- ``params``: the params.yaml mapping; an optional ``card`` section sets ``license``,
  ``license_name``, ``license_link`` and ``model_name``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from colonpipe import atomic

CARD_FILE = "README.md"
SPLITS = ("val", "test")
# task -> {headline metric: its baseline key (None: no trivial baseline)}
METRICS = {
    "cls": {"accuracy": "baseline_accuracy"},
    "reg": {"accuracy": "baseline_accuracy"},
    "rec": {"avg_iou": "baseline_avg_iou", "acc_iou_0.5": "baseline_acc_iou_0.5"},
    "cap": {"bleu4": None, "rouge_l": None, "cider": None},
}
TASK_NAMES = {"cls": "CLS (classification)", "reg": "REG (referring expression generation: box -> category)",
              "rec": "REC (referring expression comprehension: category -> box)", "cap": "CAP (image captioning)"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "owner/name", not a local path


def _cell(value: Any) -> str:
    """A markdown table cell: floats to 4 decimals (the front matter keeps full precision)."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)]


def read_metrics(metrics_dir: Path, plots_dir: Path | None = None, *, splits=SPLITS) -> dict[str, dict]:
    """``{split: {task: headline block [+ by_dataset]}}`` from ``metrics/`` (and ``plots/``) files."""
    out: dict[str, dict] = {}
    for split in splits:
        path = Path(metrics_dir) / f"{split}.json"
        if not path.is_file():
            continue
        tasks = json.loads(path.read_text())
        details = Path(plots_dir) / split / "scores.json" if plots_dir is not None else None
        extra = json.loads(details.read_text()) if details is not None and details.is_file() else {}
        out[split] = {t: {**b, **({"by_dataset": extra[t]["by_dataset"]} if "by_dataset" in extra.get(t, {}) else {})}
                      for t, b in tasks.items() if isinstance(b, dict)}
        if isinstance(tasks.get("split_role"), str):  # "seen" / "held-out", from what was trained on
            out[split]["split_role"] = tasks["split_role"]
    return out


# --------------------------------------------------------------------------- front matter
def eval_results(metrics: Mapping[str, Mapping[str, Mapping]]) -> list[EvalResult]:
    """One ``EvalResult`` per split x task x headline metric present (baselines stay in the body)."""
    results = []
    for split, tasks in metrics.items():
        for task, names in METRICS.items():
            block = tasks.get(task) or {}
            for metric in names:
                if isinstance(block.get(metric), (int, float)) and not isinstance(block.get(metric), bool):
                    results.append(EvalResult(  # config = task: ColonINST files are per task and split
                        task_type="image-text-to-text", task_name=TASK_NAMES[task], dataset_type="coloninst",
                        dataset_name=f"ColonINST-format {task.upper()} data of this run", dataset_config=task,
                        dataset_split=split, metric_type=metric, metric_name=f"{split} {task.upper()} {metric}",
                        metric_value=block[metric]))
    return results


def card_data(metrics: Mapping, params: Mapping) -> ModelCardData:
    """The front matter: license, tags, base models (hub ids only), pipeline tag, model-index."""
    card, model = params.get("card") or {}, params.get("model") or {}
    preset = model.get("preset", "tiny")
    bases = [model[k] for k in ("llm", "vision") if preset != "tiny" and _HUB_ID.match(str(model.get(k, "")))]
    license_ = card.get("license", "other")
    results = eval_results(metrics)
    return ModelCardData(
        license=license_,
        license_name=card.get("license_name", "research-only") if license_ == "other" else None,
        license_link=card.get("license_link"),
        library_name="transformers", pipeline_tag="image-text-to-text", base_model=bases or None,
        tags=["colonpipe", "colongpt", "coloninst", "colonoscopy", "medical", "vision-language",
              f"preset-{preset}"],
        model_name=card.get("model_name") or (params.get("register") or {}).get("model_name", "colongpt"),
        eval_results=results or None,
    )


# --------------------------------------------------------------------------- body
def _model_section(config: Mapping, params: Mapping) -> list[str]:
    model = params.get("model") or {}
    lines = ["## Model", "", "A ColonGPT-style vision-language model trained with colonpipe (the "
             "ColonINST / ColonGPT recipe): SigLIP vision tower, projector, Phi causal LM. It answers "
             "one question about one colonoscopy frame.", ""]
    if config:
        vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
        lines += _table(["part", "configuration"], [
            ["vision tower", f"{vision.get('model_type')}: {vision.get('num_hidden_layers')} layers, width "
                             f"{vision.get('hidden_size')}, {vision.get('image_size')} px, "
                             f"patch {vision.get('patch_size')}"],
            ["projector", f"{config.get('projector_type')}: {config.get('image_seq_length')} image tokens"],
            ["language model", f"{text.get('model_type')}: {text.get('num_hidden_layers')} layers, width "
                               f"{text.get('hidden_size')}, vocabulary {text.get('vocab_size')}"],
        ]) + [""]
    if model.get("preset", "tiny") == "tiny":
        lines += ["Preset `tiny`: random initial weights sized for a CPU demo. Its answers show that the "
                  "pipeline works, not clinical skill.", ""]
    else:
        lines += [f"Base weights: `{model.get('llm')}` (language) and `{model.get('vision')}` (vision).", ""]
    return lines


def _metrics_section(metrics: Mapping) -> list[str]:
    lines = ["## Evaluation", "", "Reference-evaluator metrics on this run's splits, each labelled seen "
             "(trained on) or held-out as the stage-2 training output records it, next to trivial "
             "baselines fitted on the training split (majority class; mean training box).", ""]
    if not metrics:
        return lines + ["Not evaluated yet: this card was written with the training output, before "
                        "evaluation. The registered model (MLflow) carries the card with the metrics and "
                        "the registry decision.", ""]
    for split, tasks in metrics.items():
        rows = [[task.upper(), metric, block.get(metric), block.get(base) if base else None, block.get("n")]
                for task, names in METRICS.items() if (block := tasks.get(task))
                for metric, base in names.items() if metric in block]
        role = f" ({tasks['split_role']})" if isinstance(tasks.get("split_role"), str) else ""
        lines += [f"### {split}{role}", "", *_table(["task", "metric", "value", "baseline", "n"], rows), ""]
        for task in METRICS:
            by = (tasks.get(task) or {}).get("by_dataset") or {}
            if by:  # cls/reg/rec groups hold {"n", "mean"} of the task's first metric; cap its scores
                keys = sorted({k for g in by.values() for k in g if k != "n"})
                names = [next(iter(METRICS[task])) if k == "mean" else k for k in keys]
                lines += [f"{split} {task.upper()} by dataset:", "",
                          *_table(["dataset", "n", *names], [[d, g.get("n"), *(g.get(k) for k in keys)]
                                                             for d, g in sorted(by.items())]), ""]
    return lines


def _decision_section(decision: Mapping | None) -> list[str]:
    lines = ["## Registry decision", ""]
    if not decision:
        return lines + ["Not registered.", ""]
    verdict = "promoted to champion" if decision.get("promoted") else "not promoted"
    lines += [f"{decision.get('model_name')} version {decision.get('candidate_version')}: **{verdict}**. "
              f"{decision.get('reason')}.", ""]
    rows = [[c.get("rule"), c.get("metric"), c.get("candidate"), c.get("reference"), c.get("ok")]
            for c in decision.get("comparisons") or []]
    lines += _table(["rule", "metric", "candidate", "reference", "ok"], rows) if rows else []
    return lines + ["", f"Champion after: {decision.get('champion_after')}; previous: "
                    f"{decision.get('previous_after')}; decided {decision.get('time')}.", ""]


def _lineage_section(lineage: Mapping) -> list[str]:
    git, lines = lineage.get("git") or {}, ["## Lineage", ""]
    if git.get("commit"):
        dirty = " (with uncommitted changes)" if git.get("dirty") else ""
        lines += [f"Code: git commit `{git['commit']}`{dirty}", ""]
    elif git:
        lines += ["Code: not in a git checkout (commit not recorded)", ""]
    inputs = lineage.get("inputs") or {}
    if inputs:
        lines += ["Data and model inputs (hashes as DVC recorded them, or computed):", "",
                  *_table(["input", "hash", "source"], [[p, f"{h.get('algo')}:{h.get('hash')}", h.get("source")]
                                                         for p, h in sorted(inputs.items())]), ""]
    if lineage.get("inputs_digest"):
        lines += [f"Inputs digest: `{lineage['inputs_digest']}`", ""]
    ingest = lineage.get("ingest") or {}
    totals = ingest.get("totals") or {}
    if totals:
        lines += ["Ingest (bad inputs are skipped or repaired, never silently used):", "", *_table(
            ["images kept", "rows", "skipped", "repaired", "images without caption"],
            [[totals.get(k) for k in ("images_kept", "rows", "skipped", "repaired", "images_without_caption")]]), ""]
        lines += _table(["source", "format", "files", "images kept", "problems"], [
            [name, s.get("format"), s.get("files"), s.get("images_kept"),
             ", ".join(f"{k}: {v}" for k, v in sorted((s.get("problems") or {}).items())) or "none"]
            for name, s in sorted((ingest.get("sources") or {}).items())]) + [""]
    return lines


LIMITS = """## Intended use and limitations

- **Research use only. This model is not a medical device** and has not been validated
  clinically: it must not be used to diagnose, treat or triage patients, or to support any
  clinical decision.
- It was trained and evaluated only on the data listed under Lineage. Frames from other
  endoscopes, centres, populations or bowel preparations may score far lower than shown.
- Answers are free text from a language model: categories can be wrong with no sign of doubt,
  and boxes (`{<x1><y1><x2><y2>}`, pixels of the source image) can be misplaced.
- The metrics are this run's, on its own splits; they are not the published ColonGPT numbers.
- The license of the weights also follows the base models' and the training datasets' terms.
"""

USAGE = """## How to use

```bash
colonpipe predict frame.png --task cls --model <this folder or models:/name@champion>
colonpipe predict frame.png --task rec --category polyp --json
```
"""


def render_card(config: Mapping, *, lineage: Mapping, metrics: Mapping, decision: Mapping | None,
                params: Mapping) -> str:
    """The card text (front matter + body) for the given inputs; a pure function."""
    data = card_data(metrics, params)
    body = [f"# {data.model_name}", "", *_model_section(config, params), *_metrics_section(metrics),
            *_decision_section(decision), *_lineage_section(lineage), LIMITS, USAGE, "## Parameters", "",
            "```yaml", yaml.safe_dump(dict(params), sort_keys=True, allow_unicode=True).rstrip(), "```", ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))  # parses and checks the metadata
    return str(card)


def write_model_card(model_dir: Path, *, lineage: Mapping, metrics: Mapping, decision: Mapping | None,
                     params: Mapping) -> Path:
    """Write ``model_dir/README.md`` (module docstring); returns its path."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    text = render_card(config, lineage=lineage, metrics=metrics, decision=decision, params=params)
    return atomic.write_text(model_dir / CARD_FILE, text)
