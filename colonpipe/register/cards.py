"""Where model cards are written: the training output (what training knows) and the registered model.

- :func:`write_training_card`: ``final/README.md`` of a train stage, written right after
  training, before any evaluation exists: lineage (git commit, input hashes, ingest counts) and
  params; the metrics and decision sections say they are not known yet. ``manifest.json`` is
  rewritten so the card is covered by the checkpoint's hashes.
- :func:`log_registered_card`: the full card (lineage of the register run, metrics of every split
  next to their baselines and per dataset, the registry decision, params) as ``README.md`` at the
  root of the registered MLflow model, once the decision is made.

Both render with :func:`colonpipe.register.model_card.render_card`, from ``params.yaml`` read
whole (the card's ``card:`` overrides included) and the ingest report when it exists.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from colonpipe import atomic
from colonpipe.model import checkpoint_files as ck
from colonpipe.params import flatten
from colonpipe.register.model_card import CARD_FILE, read_metrics, render_card, write_model_card
from colonpipe.tracking.lineage import stage_lineage

if TYPE_CHECKING:
    from colonpipe.tracking.logger import MlflowLogger

logger = logging.getLogger(__name__)

INGEST_REPORT = Path("data/interim/ingest_report.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None


def read_params(path: Path) -> dict[str, Any]:
    """``params.yaml`` as a mapping ({} when absent); bad YAML raises naming the file."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None


def _with_ingest(lineage: Mapping[str, Any], ingest_report: Path | None) -> dict[str, Any]:
    out = dict(lineage)
    if ingest_report is not None and Path(ingest_report).is_file():
        out["ingest"] = _read_json(ingest_report)
    return out


def write_training_card(final_dir: Path, *, stage: str, params_path: Path, inputs: Sequence[str | Path],
                        ingest_report: Path | None = INGEST_REPORT, lockfile: Path = Path("dvc.lock")) -> Path:
    """Write ``final_dir/README.md`` (lineage + params, no metrics yet) and refresh its manifest."""
    params = read_params(params_path)
    lineage = stage_lineage(stage, params=flatten({stage: params.get(stage) or {}}), inputs=inputs,
                            root=Path.cwd(), lockfile=lockfile)
    path = write_model_card(final_dir, lineage=_with_ingest(lineage, ingest_report), metrics={}, decision=None,
                            params=params)
    ck.write_manifest(final_dir)
    logger.info("wrote the training model card %s", path)
    return path


@dataclass(frozen=True)
class CardSources:
    """What the registered model's card is rendered from (besides the run and the decision)."""

    metrics_dir: Path = Path("metrics")
    plots_dir: Path | None = Path("plots")
    params_path: Path = Path("params.yaml")
    ingest_report: Path | None = INGEST_REPORT


def log_registered_card(log: "MlflowLogger", model_id: str, model_dir: Path, *, decision: Mapping[str, Any],
                        sources: CardSources, copy_to: Path | None = None) -> str:
    """Render the full card and add it as ``README.md`` to the logged model ``model_id``
    (``models:/<model_id>``, which the registered version points at); returns the card text.

    ``model_dir``: the logged folder (its ``config.json`` describes the architecture). The
    lineage is the one the register run recorded (``lineage/lineage.json``). ``copy_to``: a
    folder that also gets the card (the merged folder DVC publishes as an artifact).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        lineage = mlflow.artifacts.load_dict(f"runs:/{log.run_id}/lineage/lineage.json")
    except (MlflowException, OSError, ValueError) as exc:  # a run opened without stage_run has none
        logger.warning("run %s has no lineage/lineage.json (%s): the card's lineage is empty", log.run_id, exc)
        lineage = {}
    config_path = Path(model_dir) / "config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    text = render_card(config, lineage=_with_ingest(lineage, sources.ingest_report),
                       metrics=read_metrics(sources.metrics_dir, sources.plots_dir), decision=decision,
                       params=read_params(sources.params_path))
    with tempfile.TemporaryDirectory(prefix="colonpipe-card-") as tmp:
        card = atomic.write_text(Path(tmp) / CARD_FILE, text)
        log.client.log_model_artifact(model_id, str(card))
    if copy_to is not None:
        atomic.write_text(Path(copy_to) / CARD_FILE, text)
    logger.info("added the model card to logged model %s", model_id)
    return text
