"""Inference shards as Prefect work: the scale-out unit past one machine.

The unit is ``colonpipe.infer.worker.run_shard`` (one shard of one prediction file, resumable
from its own fsync'd journal), the same function the ``infer`` stage runs as one subprocess
per GPU. Here:

- ``infer_shard(spec)`` is a flow for **one** shard. Deployed on a work pool whose workers
  sit on GPU nodes (one worker per GPU, ``--limit 1``), each deployment run is one shard.
- ``infer_sharded(...)`` is ``colonpipe.infer.runner.run_inference`` (the stage's own path:
  fingerprinted journals, shards, merge in input order) with a Prefect executor: shards as
  deployment runs of ``infer_shard`` (``DeploymentExecutor``,
  ``deployment="colonpipe-infer-shard/<name>"``) or as local task runs (``TaskExecutor``).

Workers need the same view of the paths (a shared filesystem): the input JSON, the image
root, the model folder and the journal folder. A shard that fails or whose worker dies is
rerun by rerunning the flow: finished records are in its journal and are skipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from colonpipe.infer.executors import InferenceError
from colonpipe.infer.runner import InferJob, run_inference
from colonpipe.infer.worker import ShardSpec, run_shard


class ShardFailed(RuntimeError):
    """A shard's deployment run did not complete; the message says which and why."""


@task(name="infer-shard", task_run_name="shard-{spec[shard]}", cache_policy=NO_CACHE)
def run_shard_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one shard in this process; returns ``ShardResult`` as a dict."""
    result = run_shard(ShardSpec(**spec))
    get_run_logger().info("shard %d/%d: %s", spec["shard"], spec["num_shards"], asdict(result))
    return asdict(result)


@flow(name="colonpipe-infer-shard")
def infer_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """One shard (``ShardSpec`` fields as a dict): the body of a work-pool deployment run."""
    return run_shard_task(spec)


@task(name="infer-shard-remote", task_run_name="shard-{spec[shard]}-on-pool", cache_policy=NO_CACHE)
def run_shard_deployment(deployment: str, spec: dict[str, Any], timeout_s: Optional[float]) -> dict[str, Any]:
    """Run one shard as a deployment run (a worker of the pool picks it up) and wait for it."""
    run = run_deployment(deployment, parameters={"spec": spec}, timeout=timeout_s)
    state = run.state
    if state is None or not state.is_completed():
        raise ShardFailed(f"shard {spec['shard']}/{spec['num_shards']} (flow run {run.name}) ended "
                          f"{state.type.value if state else 'without a state'}: {state.message if state else ''}")
    get_run_logger().info("shard %d done by flow run %s", spec["shard"], run.name)
    return {"shard": spec["shard"], "flow_run_id": str(run.id), "flow_run_name": run.name}


class TaskExecutor:
    """Shards as Prefect task runs of ``run_shard_task`` (concurrent on the flow's task runner)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def run(self, specs: Sequence[ShardSpec], *, total: int, label: str) -> None:
        futures = [run_shard_task.submit(json.loads(spec.to_json())) for spec in specs]
        self.results = _gather(futures, label)


class DeploymentExecutor:
    """Shards as deployment runs of ``infer_shard`` on that deployment's work pool."""

    def __init__(self, deployment: str, timeout_s: Optional[float] = None) -> None:
        self.deployment, self.timeout_s = deployment, timeout_s
        self.results: list[dict[str, Any]] = []

    def run(self, specs: Sequence[ShardSpec], *, total: int, label: str) -> None:
        futures = [run_shard_deployment.submit(self.deployment, json.loads(spec.to_json()), self.timeout_s)
                   for spec in specs]
        self.results = _gather(futures, label)


def _gather(futures: list, label: str) -> list[dict[str, Any]]:
    """Every future's result; ``InferenceError`` naming each failed shard (after all have ended)."""
    results, failed = [], []
    for s, future in enumerate(futures):
        try:
            results.append(future.result())
        except Exception as exc:  # noqa: BLE001 - a shard's failure, reported with the others
            failed.append(f"shard {s}: {type(exc).__name__}: {exc}")
    if failed:
        raise InferenceError(f"{len(failed)} of {len(futures)} shards failed for {label} "
                             "(finished records are journaled; rerun to resume):\n" + "\n".join(failed))
    return results


@flow(name="colonpipe-infer-sharded")
def infer_sharded(
    input_path: str,
    image_root: str,
    model_dir: str,
    out_path: str,
    journal_dir: Optional[str] = None,
    num_shards: int = 2,
    max_new_tokens: int = 40,
    batch_size: int = 16,
    device: str = "cpu",
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    limit: Optional[int] = None,
    threads: int = 0,
    deployment: Optional[str] = None,
    timeout_s: Optional[float] = None,
) -> dict[str, Any]:
    """Predict ``input_path`` into ``out_path`` over ``num_shards`` shards, then merge.

    ``deployment`` (``"<flow name>/<deployment name>"`` of ``infer_shard``): each shard is a
    deployment run on that deployment's work pool; None: shards are local task runs.
    ``journal_dir`` defaults to ``<out_path dir>/.shards-<out_path stem>``; a rerun resumes.
    Returns the merge summary plus one entry per shard.
    """
    out = Path(out_path)
    job = InferJob(input_path=Path(input_path), image_root=Path(image_root), model_dir=Path(model_dir),
                   out_path=out, journal_dir=Path(journal_dir or out.parent / f".shards-{out.stem}"),
                   max_new_tokens=max_new_tokens, batch_size=batch_size, num_shards=num_shards,
                   device=device, dtype=dtype, attn_implementation=attn_implementation, limit=limit,
                   cpu_threads=threads)
    executor = DeploymentExecutor(deployment, timeout_s) if deployment else TaskExecutor()
    get_run_logger().info("%s: %d shard(s) via %s", input_path, num_shards, deployment or "local task runs")
    summary = run_inference(job, executor=executor)
    return {"path": str(summary.path), "records": summary.records, "errors": summary.errors,
            "shards": executor.results}
