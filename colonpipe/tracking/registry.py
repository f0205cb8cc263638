"""Model registry: register a candidate, promote it to ``champion`` only if it earns it.

The rule itself is ``colonpipe.tracking.rule.decide``. This module does the side effects:
- ``register_candidate``: a new model version tagged with its metrics (``metric.<name>``)
  and source run, so the champion's numbers always come from the registry itself;
- ``promote``: on a win the old champion gets alias ``previous`` and the candidate
  ``champion`` (the candidate remembers its predecessor in tag ``colonpipe.previous_champion``
  so ``rollback`` can restore the chain);
- every decision, with all numbers compared and the reason, is appended to
  ``registry.json`` (``{"decisions": [...]}``, rewritten atomically) and logged to the run.

Race safety: read-decide-move runs under an exclusive ``fcntl.flock`` kept next to the
sqlite store; the champion is re-read inside the lock, and ``previous`` is set before
``champion``, so even a crash between the two leaves both on the old champion, never
``previous`` on the new one. With a *remote* tracking server the file lock only serialises
processes on one machine: a team must serialise register steps itself (e.g. a Prefect
concurrency limit of 1 on the register task).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from colonpipe import atomic
from colonpipe.params import RegisterParams
from colonpipe.tracking.rule import Comparison, RegistryError, check_metrics, decide, load_metrics
from colonpipe.tracking.store import file_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from colonpipe.tracking.logger import MlflowLogger

logger = logging.getLogger(__name__)

CHAMPION, PREVIOUS = "champion", "previous"
METRIC_TAG = "metric."
PREV_CHAMPION_TAG = "colonpipe.previous_champion"


@dataclass(frozen=True)
class Decision:
    """One ``registry.json`` record: a register decision or a rollback."""

    model_name: str
    action: str  # "register" or "rollback"
    candidate_version: Optional[str]
    champion_before: Optional[str]
    promoted: bool
    reason: str
    comparisons: list[Comparison]
    champion_after: Optional[str]
    previous_after: Optional[str]
    source_run_id: Optional[str] = None
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- registry.json
def read_registry_json(path: Path) -> dict[str, Any]:
    """The decision log at ``path`` ({"decisions": []} when absent); bad content raises."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {"decisions": []}
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc}); fix or move it away") from None
    if not isinstance(data, dict) or not isinstance(data.get("decisions"), list):
        raise RegistryError(f'{path}: expected {{"decisions": [...]}}')
    return data


def append_decision(path: Path, decision: Decision) -> None:
    """Append to the decision log atomically (tmp file in the same dir, fsync, replace)."""
    path = Path(path)
    data = read_registry_json(path)
    data["decisions"].append(decision.to_json())
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- aliases
def _registry_lock(client: "MlflowClient", name: str):
    """The exclusive lock around read-decide-move for model ``name`` (see module doc)."""
    return file_lock("registry-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name), uri=client.tracking_uri)


def alias_version(client: "MlflowClient", name: str, alias: str) -> Optional[str]:
    """Version number behind ``name@alias``, or None when the alias is unset."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        raise RegistryError(f"model {name!r} is not registered in {client.tracking_uri}") from None
    version = aliases.get(alias)
    return str(version) if version is not None else None


def version_metrics(client: "MlflowClient", name: str, version: str) -> dict[str, float]:
    tags = client.get_model_version(name, version).tags
    return {k[len(METRIC_TAG):]: float(v) for k, v in tags.items() if k.startswith(METRIC_TAG)}


def _ensure_model(client: "MlflowClient", name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name)
        except MlflowException:  # created concurrently
            client.get_registered_model(name)


def register_candidate(
    client: "MlflowClient",
    name: str,
    model_uri: str,
    *,
    run_id: Optional[str],
    metrics: Mapping[str, float],
) -> "ModelVersion":
    """A new version of ``name`` from ``model_uri`` (an artifact URI or ``models:/<model_id>``),
    tagged with every metric and its source run."""
    _ensure_model(client, name)
    tags = {f"{METRIC_TAG}{k}": repr(float(v)) for k, v in metrics.items()}
    if run_id:
        tags["source_run_id"] = run_id
    model_id = model_uri[len("models:/"):] if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id
    )
    logger.info("registered %s version %s from %s", name, version.version, model_uri)
    return version


def promote(
    client: "MlflowClient",
    cfg: RegisterParams,
    version: str,
    metrics: Mapping[str, float],
    *,
    registry_path: Path,
    run_id: Optional[str] = None,
) -> Decision:
    """Decide on candidate ``version`` and move the aliases if it wins (under the lock)."""
    name = cfg.model_name
    with _registry_lock(client, name):
        read_registry_json(registry_path)  # refuse before moving anything if the log is broken
        champ = alias_version(client, name, CHAMPION)
        champ_metrics = version_metrics(client, name, champ) if champ else None
        promoted, reason, comps = decide(cfg, metrics, champ_metrics)
        if promoted:
            if champ:
                client.set_registered_model_alias(name, PREVIOUS, champ)
                client.set_model_version_tag(name, version, PREV_CHAMPION_TAG, champ)
            client.set_registered_model_alias(name, CHAMPION, version)
        decision = Decision(
            name, "register", version, champ, promoted, reason, comps,
            champion_after=alias_version(client, name, CHAMPION),
            previous_after=alias_version(client, name, PREVIOUS),
            source_run_id=run_id,
        )
        append_decision(registry_path, decision)
    logger.info("%s v%s: %s (%s)", name, version, "PROMOTED" if promoted else "not promoted", reason)
    return decision


def rollback(client: "MlflowClient", name: str, *, registry_path: Path) -> Decision:
    """``champion`` <- ``previous``; ``previous`` <- the version that preceded it (or unset)."""
    with _registry_lock(client, name):
        read_registry_json(registry_path)
        champ, prev = alias_version(client, name, CHAMPION), alias_version(client, name, PREVIOUS)
        if prev is None:
            raise RegistryError(f"model {name!r}: no '{PREVIOUS}' alias to roll back to")
        client.set_registered_model_alias(name, CHAMPION, prev)
        older = client.get_model_version(name, prev).tags.get(PREV_CHAMPION_TAG)
        if older and older != prev:
            client.set_registered_model_alias(name, PREVIOUS, older)
        else:
            client.delete_registered_model_alias(name, PREVIOUS)
        if champ:
            client.set_model_version_tag(name, champ, "colonpipe.rolled_back", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        decision = Decision(
            name, "rollback", prev, champ, True, f"rolled back champion v{champ} -> v{prev}", [],
            champion_after=alias_version(client, name, CHAMPION),
            previous_after=alias_version(client, name, PREVIOUS),
        )
        append_decision(registry_path, decision)
    logger.info("%s", decision.reason)
    return decision


# --------------------------------------------------------------------------- the stage
def log_model_dir(log: "MlflowLogger", model_dir: Path, *, artifact_path: str = "model") -> str:
    """Copy ``model_dir`` into the run's artifacts at ``artifact_path``; return its URI (a plain
    folder, not servable; the register stage logs the pyfunc, see ``model_log``)."""
    log.log_artifact(model_dir, artifact_path)
    return f"{log.client.get_run(log.run_id).info.artifact_uri}/{artifact_path}"


def log_decision(log: "MlflowLogger", decision: Decision) -> None:
    """Record a decision on the run: tags, a 0/1 metric, and ``registry/decision.json``."""
    log.set_tags({
        "colonpipe.registry.promoted": str(decision.promoted).lower(),
        "colonpipe.registry.reason": decision.reason,
        "colonpipe.registry.candidate_version": decision.candidate_version,
        "colonpipe.registry.champion_before": decision.champion_before or "none",
        "colonpipe.registry.champion_after": decision.champion_after or "none",
    })
    log.log_metrics({"registry.promoted": float(decision.promoted)})
    log.log_json(decision.to_json(), "registry/decision.json")


def register_model(
    cfg: RegisterParams,
    log: "MlflowLogger",
    *,
    metrics_paths: Sequence[Path],
    model_dir: Path,
    registry_path: Path,
    artifact_path: str = "model",
) -> Decision:
    """The ``register`` stage: log metrics and the servable pyfunc model (named
    ``artifact_path``), register it as a version (``models:/m-...``), decide, record."""
    metrics = load_metrics(metrics_paths)
    check_metrics(cfg, metrics, source=", ".join(map(str, metrics_paths)))
    if not Path(model_dir).is_dir():
        raise RegistryError(f"{model_dir}: model directory not found")
    log.log_metrics(metrics)
    from colonpipe.infer.load import ModelLoadError
    from colonpipe.tracking.model_log import log_pyfunc_model

    try:
        info = log_pyfunc_model(log, Path(model_dir), name=artifact_path)
    except ModelLoadError as exc:
        raise RegistryError(str(exc)) from exc
    version = register_candidate(log.client, cfg.model_name, info.model_uri, run_id=log.run_id, metrics=metrics)
    decision = promote(log.client, cfg, str(version.version), metrics,
                       registry_path=Path(registry_path), run_id=log.run_id)
    log_decision(log, decision)
    return decision
