"""The pipeline flow: every DVC stage as its own Prefect task, in ``dvc repro`` order.

A scheduled run is the same computation as ``dvc repro`` by hand: each task runs
``dvc repro --single-item <stage>`` (``-f`` when forced), so DVC decides what is up to
date, restores cached outputs and writes ``dvc.lock``; Prefect adds the schedule, one
task run per stage (state, streamed logs, duration), retries for transient errors only,
and a link to the MLflow parent run that groups the stages' runs.

Param overrides use DVC's own ``-S`` syntax and code (``key=value``), checked first
(``flows.overrides``: existing keys only, no file prefix or interpolation, values built
through colonpipe's params schema), then applied to the workspace ``params.yaml`` exactly
as ``dvc exp run -S`` does in the workspace; with ``exp_name`` the finished workspace is saved as a DVC experiment
(``dvc exp save``), so ``dvc exp show`` lists the run next to hand-made experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as current_flow_run

from flows import dvc_cli
from flows import overrides as ovr
from colonpipe.tracking.runs import close_run, open_run, parent_env
from colonpipe.tracking.store import tracking_uri
from flows.mlflow_runs import publish_run_link
from flows.registry_slot import slot_for


@task(cache_policy=NO_CACHE, name="list-stages", retries=2, retry_delay_seconds=5,
      retry_condition_fn=dvc_cli.retry_transient)
def list_stages(repo: str, targets: Optional[list[str]] = None) -> list[str]:
    """The stages ``dvc repro <targets>`` covers, upstream first."""
    stages = dvc_cli.stage_order(repo, targets)
    get_run_logger().info("stages in order: %s", ", ".join(stages))
    return stages


@task(cache_policy=NO_CACHE, name="apply-params", retries=0)
def apply_params(repo: str, overrides: list[str]) -> None:
    """Check ``-S``-style overrides (``flows.overrides``), then apply them to the workspace's
    ``params.yaml``; a bad one fails here, before the file or any stage is touched."""
    ovr.check_point(repo, overrides, point=f"{Path(repo) / ovr.PARAMS_FILE}: cannot apply overrides {overrides}")
    dvc_cli.apply_overrides(repo, overrides)
    get_run_logger().info("params.yaml overrides applied: %s", overrides)


@task(cache_policy=NO_CACHE, name="dvc-stage", task_run_name="{stage}", retries=2, retry_delay_seconds=[10, 30],
      retry_condition_fn=dvc_cli.retry_transient)
def run_stage(stage: str, repo: str, *, force: bool = False,
              env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Reproduce one stage; returns ``{"stage", "ran"}`` (``ran`` False: DVC reused the cache).

    A failing stage raises ``CommandFailed`` carrying the stage's own error text.
    """
    log = get_run_logger()
    argv = [dvc_cli.dvc_executable(), "repro", "--single-item", stage] + (["--force"] if force else [])
    try:
        out = dvc_cli.run_command(argv, cwd=repo, env=dvc_cli.child_env(env), on_line=log.info)
    except dvc_cli.CommandFailed as exc:
        raise type(exc)(f"stage {stage!r} failed: {exc}", returncode=exc.returncode,
                        output=exc.output) from None
    ran = f"Running stage '{stage}'" in out
    log.info("stage %s: %s", stage, "ran" if ran else "up to date, outputs from DVC's cache")
    return {"stage": stage, "ran": ran}


@task(cache_policy=NO_CACHE, name="dvc-exp-save", retries=2, retry_delay_seconds=5,
      retry_condition_fn=dvc_cli.retry_transient)
def save_experiment(repo: str, name: str) -> None:
    """Snapshot the workspace as DVC experiment ``name`` (``dvc exp save``)."""
    dvc_cli.run_command([dvc_cli.dvc_executable(), "exp", "save", "--force", "-n", name],
                        cwd=repo, on_line=get_run_logger().info)


def _run_name() -> str:
    return f"pipeline-{current_flow_run.name or 'local'}"


@flow(name="colonpipe-pipeline", log_prints=True)
def pipeline(
    repo: str = ".",
    targets: Optional[list[str]] = None,
    params: Optional[Union[dict[str, Any], list[str]]] = None,
    force: bool = False,
    exp_name: Optional[str] = None,
    experiment: Optional[str] = None,
) -> list[dict[str, Any]]:
    """Run the DVC pipeline stage by stage.

    Args:
        repo: the DVC repository (the deployment's working directory by default).
        targets: stages to reproduce with their upstream (``dvc repro <targets>``); all if empty.
        params: overrides, ``{"finetune.lora.r": 8}`` or ``["finetune.lora.r=8"]`` (``dvc exp run -S``).
        force: rerun every selected stage even if DVC finds it up to date (``dvc repro -f``).
        exp_name: save the result as this DVC experiment (``dvc exp save -n``).
        experiment: MLflow experiment of the parent run (default: the project's).
    Returns one ``{"stage", "ran"}`` per stage, in order.
    """
    repo = str(Path(repo).resolve())
    overrides = dvc_cli.format_overrides(params)
    if overrides:
        apply_params(repo, overrides)
    stages = list_stages(repo, targets or None)
    parent = open_run(tracking_uri(repo), run_name=_run_name(), experiment=experiment,
                      tags={"colonpipe.kind": "pipeline", "prefect.flow_run_id": str(current_flow_run.id),
                            "colonpipe.targets": ",".join(targets or []) or "all",
                            "colonpipe.overrides": " ".join(overrides)})
    publish_run_link(parent, key="mlflow-parent-run", title="MLflow parent run of this pipeline execution")
    env = parent_env(parent) | ({"MLFLOW_EXPERIMENT_NAME": experiment} if experiment else {})
    results: list[dict[str, Any]] = []
    try:
        for stage in stages:  # in the flow's thread: cancellation reaches the running stage
            with slot_for(stage):  # `register` holds the cross-machine registry slot (flows/registry_slot.py)
                results.append(run_stage(stage, repo, force=force, env=env))
        if exp_name:
            save_experiment(repo, exp_name)
    except BaseException as exc:  # Prefect's cancellation arrives as a BaseException
        dvc_cli.kill_all_live()
        close_run(parent, ok=False, killed=not isinstance(exc, Exception))
        raise
    close_run(parent, ok=True)
    return results


if __name__ == "__main__":
    pipeline()
