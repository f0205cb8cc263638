"""The flows on the real demo pipeline, in a temporary copy of this checkout (the slow tests).

One module-scoped pipeline run (smallest demo params, applied the way a user would: the
flow's ``params`` overrides) feeds the other tests: a two-point sweep that reruns only
inference of one task and the evaluation, and the evaluation flow on the registered
champion when the pipeline registers one.
"""

from __future__ import annotations

import json

import pytest

from flows import dvc_cli
from tests.flows.conftest import commit_all, copy_checkout

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SMALL = {  # minutes on 2 cores: a handful of images, a few optimizer steps, short captions
    "demo.images_per_category": 4,
    "align.max_steps": 2, "align.save_steps": 1,
    "finetune.max_steps": 3, "finetune.save_steps": 2,
    "infer.num_shards": 1, "infer.max_new_tokens.cap": 16,
}


def _dvc(repo, *args: str) -> str:
    return dvc_cli.run_command([dvc_cli.dvc_executable(), *args], cwd=repo, on_line=lambda _l: None)


@pytest.fixture(scope="module")
def demo(prefect_api, tmp_path_factory):
    """``(repo, final state, stages)`` after the pipeline flow ran the whole demo."""
    from flows.pipeline import pipeline

    repo = copy_checkout(tmp_path_factory.mktemp("demo"))
    commit_all(repo, "checkout copy")
    stages = _dvc(repo, "stage", "list", "--all", "--name-only").split()
    state = pipeline(repo=str(repo), params=SMALL, return_state=True)
    if state.is_completed():
        commit_all(repo, "demo pipeline run (dvc.lock, params)")  # experiments start from HEAD
    return repo, state, stages


def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return {r.name: r for r in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))}


def test_pipeline_flow_runs_every_demo_stage(demo):
    repo, state, stages = demo
    assert state.is_completed(), state.message
    order = dvc_cli.stage_order(repo)
    assert [r["stage"] for r in state.result()] == order and set(order) == set(stages)
    runs = _task_runs(state.state_details.flow_run_id)
    for stage in stages:
        assert runs[stage].state.is_completed(), f"{stage}: {runs[stage].state}"
    assert "Data and pipelines are up to date" in _dvc(repo, "status")  # a flow run == dvc repro


def test_pipeline_stage_runs_nest_under_the_flow_parent_run(demo):
    from colonpipe.tracking.store import get_client

    repo, state, _ = demo
    client = get_client(f"sqlite:///{repo}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("colonpipe")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`colonpipe.kind` = 'pipeline'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert {"align", "finetune"} <= {c.info.run_name for c in children}


def test_two_point_sweep_on_the_demo_names_its_best_in_prefect_dvc_and_mlflow(demo):
    from colonpipe.tracking.store import get_client
    from flows.dvc_experiments import experiment_records
    from flows.sweep import sweep

    repo, state, stages = demo
    assert state.is_completed(), state.message
    if "evaluate" not in stages:
        pytest.skip("the pipeline has no evaluate stage yet")
    target, metric = "evaluate", "metrics/test.json:cls.accuracy"
    # one token of CLS answer vs the full 40: only infer@cls and evaluate rerun
    out = sweep(repo=str(repo), grid={"infer.max_new_tokens.cls": [1, 40]}, targets=[target],
                metric=metric, jobs=2, name="demo-sweep")
    assert out["failed"] == [] and set(out["experiments"]) == {"demo-sweep-1", "demo-sweep-2"}
    missing = [n for n, r in out["experiments"].items() if metric not in r["metrics"]]
    assert not missing, (
        f"`dvc exp show` has no {metric} for {missing}: a metrics file declared `cache: false` inside a "
        "git-ignored folder (/metrics/ in .gitignore) is in neither git nor DVC's cache, so DVC "
        "experiments cannot show it; cache the evaluate metrics (drop `cache: false`) or un-ignore them")
    values = {n: r["metrics"][metric] for n, r in out["experiments"].items()}
    assert out["best"] == max(values, key=values.get)
    shown = experiment_records(json.loads(_dvc(repo, "exp", "show", "--json")))
    assert {n: shown[n].metrics[metric] for n in values} == values  # dvc exp show: same names, same numbers
    parent = get_client(f"sqlite:///{repo}/mlruns/mlflow.db").get_run(out["mlflow_run_id"])
    assert parent.data.tags["colonpipe.best_experiment"] == out["best"]


def test_evaluation_flow_scores_the_demo_champion(demo):
    from colonpipe.tracking.store import get_client
    from flows.evaluate import evaluate_model

    repo, state, stages = demo
    assert state.is_completed(), state.message
    if "register" not in stages:
        pytest.skip("the pipeline has no register stage yet")
    result = evaluate_model(repo=str(repo), split="test", tasks=["cls"])
    tags = get_client(f"sqlite:///{repo}/mlruns/mlflow.db").get_model_version(result["name"], result["version"]).tags
    assert tags["eval.test.run_id"] == result["run_id"]
    # the flow's score equals the pipeline's own evaluation of the same model on the same records
    pipeline_metrics = json.loads((repo / "metrics" / "test.json").read_text())
    assert result["metrics"]["cls"]["accuracy"] == pytest.approx(pipeline_metrics["cls"]["accuracy"])
