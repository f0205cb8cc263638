"""Model registry: register a candidate, promote it to ``champion`` only if it earns it.

The rule itself is ``colonpipe.register.rule.decide``. This module does the side effects:
- ``register_candidate``: a new model version tagged with its metrics (``metric.<name>``)
  and source run, so the champion's numbers always come from the registry itself;
- ``promote``: on a win the old champion gets alias ``previous`` and the candidate
  ``champion`` (the candidate remembers its predecessor in tag ``colonpipe.previous_champion``
  so ``rollback`` can restore the chain);
- every decision, with all numbers compared and the reason, is appended to
  ``registry.json`` (``{"decisions": [...]}``, strict JSON: a NaN is written as ``"nan"``,
  rewritten atomically) and logged to the run.

Race safety, in three layers:
1. read-decide-move runs under an exclusive ``fcntl.flock`` keyed by the canonical store
   URI (``store.canonical_uri``: every spelling of one store shares it). For a sqlite store
   it sits next to the database; the champion is re-read inside the lock, and ``previous`` is
   set before ``champion``, so a crash between the two leaves both on the old champion.
2. The file lock only serialises one machine. With a *remote* store (``store.is_remote``:
   an MLflow server, Databricks, a database server), ``promote`` also re-reads ``champion``
   right before writing and ``register.remote_verify_s`` seconds after writing; if another
   writer moved it in between, the candidate is re-judged against the new champion (and
   restored over it only if it beats it), for at most ``MAX_ROUNDS`` rounds. This converges
   on the better model as long as no writer takes longer than ``remote_verify_s`` between
   its read and its write; MLflow has no compare-and-set, so that window cannot be closed
   here.
3. The flows that register take the Prefect global concurrency limit ``colonpipe-registry``
   (``flows/registry_slot.py``), which serialises them across machines outright.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from colonpipe import atomic
from colonpipe.params import RegisterParams
from colonpipe.register.rule import Comparison, RegistryError, check_metrics, decide, load_metrics
from colonpipe.tracking.store import file_lock, is_remote

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from colonpipe.register.cards import CardSources
    from colonpipe.tracking.logger import MlflowLogger

logger = logging.getLogger(__name__)

CHAMPION, PREVIOUS = "champion", "previous"
MAX_ROUNDS = 5  # remote stores: re-decisions before giving up on a champion that keeps moving
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
        """The record as strict JSON: non-finite numbers become strings ("nan", "inf")."""
        return _json_safe(asdict(self))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


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
    atomic.write_json(path, data, allow_nan=False, ensure_ascii=True)


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


def _tag_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # a hand-edited tag: a broken number, which the rule never trusts
        return math.nan


def version_metrics(client: "MlflowClient", name: str, version: str) -> dict[str, float]:
    """The ``metric.*`` tags of ``name`` v``version`` as numbers (an unparsable tag is NaN)."""
    tags = client.get_model_version(name, version).tags
    return {k[len(METRIC_TAG):]: _tag_number(v) for k, v in tags.items() if k.startswith(METRIC_TAG)}


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


@dataclass
class _Outcome:
    champion_before: Optional[str]
    promoted: bool
    reason: str
    comparisons: list[Comparison]


def _move(client: "MlflowClient", name: str, version: str, champ: Optional[str]) -> None:
    """``previous`` <- ``champ`` (remembered on ``version``), then ``champion`` <- ``version``."""
    if champ:
        client.set_registered_model_alias(name, PREVIOUS, champ)
        client.set_model_version_tag(name, version, PREV_CHAMPION_TAG, champ)
    client.set_registered_model_alias(name, CHAMPION, version)


def _judge(client: "MlflowClient", cfg: RegisterParams, metrics: Mapping[str, float], champ: Optional[str]):
    return decide(cfg, metrics, version_metrics(client, cfg.model_name, champ) if champ else None)


def _decide_and_move(client: "MlflowClient", cfg: RegisterParams, version: str,
                     metrics: Mapping[str, float], *, verify_s: Optional[float]) -> _Outcome:
    """Judge ``version`` against the champion and move the aliases if it wins.

    ``verify_s`` None (a local store, serialised by the file lock): read once, write once.
    Otherwise the champion is re-read before the write and ``verify_s`` seconds after it,
    and the candidate is re-judged whenever another writer moved it (see the module doc).
    """
    name = cfg.model_name
    champ = before = alias_version(client, name, CHAMPION)
    notes: list[str] = []
    moved = False
    for _ in range(MAX_ROUNDS):
        if champ == version:  # put back by a writer that re-judged in its favour
            promoted, reason, comps = True, f"v{version} is champion", []
            break
        promoted, reason, comps = _judge(client, cfg, metrics, champ)
        if not promoted or verify_s is None:
            if promoted:
                _move(client, name, version, champ)
            break
        now = alias_version(client, name, CHAMPION)
        if now == champ:
            _move(client, name, version, champ)
            moved = True
            time.sleep(verify_s)
            now = alias_version(client, name, CHAMPION)
            if now == version:
                break
            notes.append(f"another writer set champion to v{now} after v{version} was set")
        else:
            notes.append(f"champion moved v{champ} -> v{now} while deciding")
        champ = now
    else:
        promoted = alias_version(client, name, CHAMPION) == version
        reason = f"champion kept moving for {MAX_ROUNDS} rounds; left at v{alias_version(client, name, CHAMPION)}"
    if moved and not promoted and alias_version(client, name, PREVIOUS) != version:
        # overwritten by a writer that never saw it as champion: it has no predecessor to restore
        client.delete_model_version_tag(name, version, PREV_CHAMPION_TAG)
    return _Outcome(before, promoted, "; ".join([*notes, reason]), comps)


def promote(
    client: "MlflowClient",
    cfg: RegisterParams,
    version: str,
    metrics: Mapping[str, float],
    *,
    registry_path: Path,
    run_id: Optional[str] = None,
) -> Decision:
    """Decide on candidate ``version`` and move the aliases if it wins (under the lock; with a
    remote store, verified after the write: see the module doc)."""
    name = cfg.model_name
    verify_s = cfg.remote_verify_s if is_remote(client.tracking_uri) else None
    with _registry_lock(client, name):
        read_registry_json(registry_path)  # refuse before moving anything if the log is broken
        out = _decide_and_move(client, cfg, version, metrics, verify_s=verify_s)
        decision = Decision(
            name, "register", version, out.champion_before, out.promoted, out.reason, out.comparisons,
            champion_after=alias_version(client, name, CHAMPION),
            previous_after=alias_version(client, name, PREVIOUS),
            source_run_id=run_id,
        )
        append_decision(registry_path, decision)
    logger.info("%s v%s: %s (%s)", name, version, "PROMOTED" if out.promoted else "not promoted", out.reason)
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
    merged_dir: Optional[Path] = None,
    card: Optional["CardSources"] = None,
) -> Decision:
    """The ``register`` stage: log metrics and the servable pyfunc model (named
    ``artifact_path``), register it as a version (``models:/m-...``), decide, record.

    ``merged_dir``: a training output is first merged there (bfloat16, ``colonpipe merge``), a
    folder that loads on its own, and that folder is what gets logged (a saved ColonGPT is logged
    as it is). ``card``: after the decision, the full model card goes into the registered model
    (and into the merged folder).
    """
    metrics = load_metrics(metrics_paths)
    check_metrics(cfg, metrics, source=", ".join(map(str, metrics_paths)))
    if not Path(model_dir).is_dir():
        raise RegistryError(f"{model_dir}: model directory not found")
    log.log_metrics(metrics)
    from colonpipe.infer.load import ModelLoadError
    from colonpipe.register.model_log import log_pyfunc_model, merged_copy

    try:
        served = merged_copy(Path(model_dir), Path(merged_dir)) if merged_dir is not None else Path(model_dir)
        info = log_pyfunc_model(log, served, name=artifact_path)
    except ModelLoadError as exc:
        raise RegistryError(str(exc)) from exc
    version = register_candidate(log.client, cfg.model_name, info.model_uri, run_id=log.run_id, metrics=metrics)
    decision = promote(log.client, cfg, str(version.version), metrics,
                       registry_path=Path(registry_path), run_id=log.run_id)
    log_decision(log, decision)
    if card is not None:
        from colonpipe.register.cards import log_registered_card

        merged = merged_dir is not None and served == Path(merged_dir)
        log_registered_card(log, info.model_id, served, decision=decision.to_json(), sources=card,
                            copy_to=served if merged else None)
    return decision
