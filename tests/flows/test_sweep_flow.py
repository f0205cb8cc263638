"""The sweep flow: queued DVC experiments, a failed point reported, the best named everywhere."""

from __future__ import annotations

import json

import pytest

from flows import dvc_cli
from flows.sweep import sweep

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _mlflow(repo):
    from colonpipe.tracking.store import get_client

    return get_client(f"sqlite:///{repo}/mlruns/mlflow.db")


def test_sweep_runs_points_as_dvc_experiments_and_names_the_best(prefect_api, tiny_repo):
    state = sweep(repo=str(tiny_repo), grid={"b.word": ["ab", "fail", "abcd"]}, points=[{"a.n": 1, "b.word": "z"}],
                  metric="score", mode="max", jobs=2, name="t", return_state=True)
    assert state.is_completed(), state.message  # one failed point does not fail the sweep
    out = state.result()
    exps = out["experiments"]
    assert list(exps) == ["t-1", "t-2", "t-3", "t-4"]
    assert out["best"] == "t-3" and exps["t-3"]["metrics"]["m.json:score"] == 3 * 4
    assert out["failed"] == ["t-2"] and "two: the word 'fail' is not allowed" in exps["t-2"]["error"]
    assert exps["t-4"]["params"] == {"a.n": 1, "b.word": "z"} and exps["t-4"]["metrics"]["m.json:score"] == 1

    # DVC lists the same experiments, with their metrics
    show = json.loads(dvc_cli.run_command([dvc_cli.dvc_executable(), "exp", "show", "--json"], cwd=tiny_repo,
                                          on_line=lambda _l: None))
    from flows.dvc_experiments import experiment_records

    shown = experiment_records(show)
    assert {"t-1", "t-3", "t-4"} <= set(shown) and shown["t-3"].metrics["m.json:score"] == 12

    # Prefect: the failed point is a failed task run carrying the experiment's own error
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = {r.name: r for r in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))}
    assert runs["t-2"].state.is_failed() and "not allowed" in runs["t-2"].state.message
    assert runs["t-3"].state.is_completed()

    # MLflow: one parent, one child per experiment, best named on the parent
    client = _mlflow(tiny_repo)
    parent = client.get_run(out["mlflow_run_id"])
    assert parent.data.tags["colonpipe.best_experiment"] == "t-3" and parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_name = {c.data.tags["colonpipe.dvc_exp_name"]: c for c in children}
    assert set(by_name) == {"t-1", "t-2", "t-3", "t-4"}
    assert by_name["t-3"].data.params["b.word"] == "abcd" and by_name["t-3"].info.status == "FINISHED"
    assert by_name["t-2"].info.status == "FAILED" and "not allowed" in by_name["t-2"].data.tags["colonpipe.error"]
    assert any(v == 12.0 for k, v in by_name["t-3"].data.metrics.items() if k.endswith("score"))
