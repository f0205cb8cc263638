"""The evaluation flow: score a registered model version on a split, log it against that version.

Steps, each a task run:
1. resolve ``<model>@<alias>`` (default ``champion``) or an explicit version in the MLflow
   registry (``register.model_name`` from ``params.yaml`` unless named);
2. fetch the version's model folder (``mlflow.artifacts.download_artifacts`` of its source);
3. predict every task of the split with the project's sharded, resumable inference
   (``colonpipe.infer.runner.run_inference``, knobs from ``params.yaml`` ``infer``);
4. score with the reference rules (``colonpipe.evaluate.suite.evaluate_splits``);
5. log an MLflow run linked to the version (tags ``colonpipe.model_name`` / ``_version`` /
   ``_alias``, metrics ``<split>.<task>.<metric>``, plots) and tag the version itself with
   ``eval.<split>.<task>.<metric>``, ``eval.<split>.run_id`` and ``eval.<split>.time``.

The ``metric.*`` tags the promotion rule compares are never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from colonpipe.coloninst import COMBINED_TASK, instruction_path
from colonpipe.evaluate.suite import evaluate_splits
from colonpipe.infer.task import infer_task
from colonpipe.params import load_params, load_section
from colonpipe.register.registry import alias_version
from colonpipe.tracking.runs import close_run, open_run
from colonpipe.tracking.store import get_client, tracking_uri
from flows.mlflow_runs import publish_run_link, retry_on_io

MODEL_MARKERS = ("train_config.json", "config.json")  # what colonpipe.infer.load accepts


@task(name="resolve-model-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_io)
def resolve_version(uri: str, name: str, alias: Optional[str], version: Optional[str]) -> dict[str, Any]:
    """``{"name", "version", "alias", "source", "run_id"}`` of ``name@alias`` or ``name`` v``version``."""
    client = get_client(uri)
    if version is None:
        version = alias_version(client, name, alias or "champion")
        if version is None:
            raise LookupError(f"model {name!r} has no version with alias {alias!r} in {uri}")
    mv = client.get_model_version(name, str(version))
    return {"name": name, "version": str(mv.version), "alias": alias if alias else None,
            "source": mv.source, "run_id": mv.run_id}


def _model_folder(root: Path) -> Path:
    """The loadable model folder inside a downloaded artifact tree (the root or one below)."""
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if any((folder / m).is_file() for m in MODEL_MARKERS):
            return folder
    raise FileNotFoundError(f"{root}: no model folder ({' or '.join(MODEL_MARKERS)}) in the artifacts")


@task(name="fetch-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_io)
def fetch_model(uri: str, source: str, dest: str) -> str:
    """Download the version's artifacts to ``dest`` once (a ``.complete`` marker); return the model folder."""
    import mlflow.artifacts

    dest_path = Path(dest)
    if not (dest_path / ".complete").exists():
        dest_path.mkdir(parents=True, exist_ok=True)
        artifacts = source
        if source.startswith("models:/m-"):  # an MLflow 3 logged model: resolve it in *this* store,
            # not the process-wide default store that `models:/` URIs are otherwise looked up in
            artifacts = get_client(uri).get_logged_model(source.split("/", 1)[1]).artifact_location
        mlflow.artifacts.download_artifacts(artifact_uri=artifacts, dst_path=str(dest_path), tracking_uri=uri)
        (dest_path / ".complete").write_text(source + "\n")
    return str(_model_folder(dest_path))


@task(name="predict", task_run_name="predict-{split}-{task_name}", cache_policy=NO_CACHE)
def predict(repo: str, model_dir: str, split: str, task_name: str, out_dir: str) -> Optional[str]:
    """Predictions of ``task_name`` on ``split`` into ``out_dir`` (resumable); None if no input.

    The ``infer`` stage's own call (``colonpipe.infer.task.infer_task``), with ``infer.splits``
    replaced by ``[split]``; data paths from params ``paths``.
    """
    params = load_params(Path(repo) / "params.yaml")
    paths = params["paths"]
    json_dir = Path(repo) / paths.json_dir
    if not instruction_path(json_dir, split, task_name).exists():
        get_run_logger().warning("%s: missing; %s %s not evaluated",
                                 instruction_path(json_dir, split, task_name), split, task_name)
        return None
    with contextlib.chdir(repo):  # a training output names its base model relative to the repo
        [summary] = infer_task(task_name, model_dir=Path(model_dir), data_dir=json_dir,
                               image_root=Path(repo) / paths.image_roots, out_dir=Path(out_dir),
                               params=dataclasses.replace(params["infer"], splits=[split]))
    return str(summary.path)


@task(name="score", cache_policy=NO_CACHE)
def score(repo: str, pred_dir: str, split: str, tasks: list[str], work_dir: str) -> dict[str, Any]:
    """Reference-rule scores: ``{"metrics": {task: headline}, "flat": {...}, "artifacts": [...]}``.

    The ``evaluate`` section's rules (``scoring``, ``iou_bins``); baselines from the stage-2
    training file when it exists.
    """
    params = load_params(Path(repo) / "params.yaml")
    cfg, json_dir = params["evaluate"], Path(repo) / params["paths"].json_dir
    train_json = instruction_path(json_dir, "train", COMBINED_TASK)
    result = evaluate_splits(Path(pred_dir), metrics_dir=Path(work_dir) / "metrics",
                             plots_dir=Path(work_dir) / "plots", splits=[split], tasks=tasks,
                             source_dir=json_dir, train_json=train_json if train_json.exists() else None,
                             iou_bins=cfg.iou_bins, scoring=cfg.scoring)
    return {"metrics": result.metrics[split], "flat": result.flat(),
            "artifacts": [str(p) for p in result.metric_files + result.artifacts]}


@task(name="log-evaluation", cache_policy=NO_CACHE)  # no retry: it would open a second run
def log_against_version(uri: str, mv: dict[str, Any], split: str, scores: dict[str, Any],
                        experiment: Optional[str]) -> dict[str, str]:
    """An MLflow run linked to the version, and ``eval.*`` tags on the version itself."""
    run = open_run(uri, run_name=f"evaluate {mv['name']} v{mv['version']} on {split}", experiment=experiment,
                   tags={"colonpipe.kind": "evaluation", "colonpipe.model_name": mv["name"],
                         "colonpipe.model_version": mv["version"], "colonpipe.model_alias": mv["alias"] or "",
                         "colonpipe.model_source_run": mv["run_id"] or "", "colonpipe.split": split})
    log = run.logger()
    log.log_metrics(scores["flat"])
    for path in scores["artifacts"]:
        log.log_artifact(path, f"evaluation/{split}")
    client = get_client(uri)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, value in {**{f"eval.{k}": v for k, v in scores["flat"].items()},
                       f"eval.{split}.run_id": run.run_id, f"eval.{split}.time": stamp}.items():
        client.set_model_version_tag(mv["name"], mv["version"], key, str(value))
    close_run(run, ok=True)
    publish_run_link(run, key="mlflow-evaluation-run", title=f"{mv['name']} v{mv['version']} on {split}")
    return {"run_id": run.run_id, "url": run.url}


def _table(mv: dict[str, Any], split: str, metrics: dict[str, dict]) -> str:
    rows = [f"### {mv['name']} v{mv['version']} ({mv['alias'] or 'by version'}) on `{split}`\n",
            "| task | metric | value |", "|---|---|---|"]
    rows += [f"| {t} | {k} | {v:.4f} |" for t, block in metrics.items() for k, v in block.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "\n".join(rows) + "\n"


@flow(name="colonpipe-evaluate", log_prints=True)
def evaluate_model(
    repo: str = ".",
    alias: Optional[str] = "champion",
    version: Optional[int] = None,
    model_name: Optional[str] = None,
    split: str = "test",
    tasks: Optional[list[str]] = None,
    work_dir: Optional[str] = None,
    experiment: Optional[str] = None,
) -> dict[str, Any]:
    """Score ``model_name@alias`` (or version ``version``) on ``split``; log it against the version.

    Args:
        repo: the project checkout (data under ``data/coloninst``, ``params.yaml``).
        alias / version: which model version; ``version`` wins when both are given.
        model_name: registered model (default ``register.model_name`` in params.yaml).
        split: ``val`` or ``test``.
        tasks: default: every task of ``evaluate.tasks`` except CAP, which the reference answers
            with the stage-1 (align) model, not the registered stage-2 model.
        work_dir: downloads and predictions (default ``<repo>/<paths.models>/eval/<name>-v<version>``).
    Returns ``{"name", "version", "split", "metrics", "run_id"}``.
    """
    repo = str(Path(repo).resolve())
    uri = tracking_uri(repo)
    name = model_name or load_section("register", Path(repo) / "params.yaml").model_name
    wanted = tasks or [t for t in load_section("evaluate", Path(repo) / "params.yaml").tasks if t != "cap"]
    mv = resolve_version(uri, name, alias, None if version is None else str(version))
    models = load_section("paths", Path(repo) / "params.yaml").models
    work = Path(work_dir or Path(repo) / models / "eval" / f"{name}-v{mv['version']}")
    model_dir = fetch_model(uri, mv["source"], str(work / "model"))
    pred_dir = work / "pred"
    done = [t for t in wanted if predict(repo, model_dir, split, t, str(pred_dir))]
    if not done:
        json_dir = Path(repo) / load_section("paths", Path(repo) / "params.yaml").json_dir
        raise FileNotFoundError(f"{json_dir / split}: no instruction files for tasks {wanted}")
    scores = score(repo, str(pred_dir), split, done, str(work))
    logged = log_against_version(uri, mv, split, scores, experiment)
    create_markdown_artifact(_table(mv, split, scores["metrics"]), key="evaluation-summary",
                             description=f"{name} v{mv['version']} on {split}")
    return {"name": name, "version": mv["version"], "split": split, "metrics": scores["metrics"],
            "run_id": logged["run_id"]}
