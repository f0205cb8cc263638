"""The pipeline flow on a real DVC repo under a real Prefect server: tasks, failures, cache, retries."""

from __future__ import annotations

import json
import threading
import time

import pytest
import yaml

from flows.pipeline import pipeline

pytestmark = pytest.mark.integration


def _task_runs(flow_run_id) -> dict[str, object]:
    """Task runs of a flow run by name (the stage tasks are named after their stage)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r for r in runs}


def _artifacts(flow_run_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts}


def _mlflow_run(repo, run_id):
    from colonpipe.tracking.store import get_client

    return get_client(f"sqlite:///{repo}/mlruns/mlflow.db").get_run(run_id)


def test_each_stage_is_a_task_run_with_logs_and_an_mlflow_parent(prefect_api, tiny_repo):
    state = pipeline(repo=str(tiny_repo), params={"a.n": 4}, return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == [{"stage": "one", "ran": True}, {"stage": "two", "ran": True}]
    assert json.loads((tiny_repo / "m.json").read_text())["score"] == 8  # override applied: 4 * len("hi")
    assert yaml.safe_load((tiny_repo / "params.yaml").read_text())["a"]["n"] == 4
    runs = _task_runs(state.state_details.flow_run_id)
    for stage in ("one", "two"):
        assert runs[stage].state.is_completed() and runs[stage].total_run_time.total_seconds() > 0
    arts = _artifacts(state.state_details.flow_run_id)
    link = arts["mlflow-parent-run"]
    run_id = link.data.split("/runs/")[-1].strip("/)")
    parent = _mlflow_run(tiny_repo, run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["colonpipe.kind"] == "pipeline"
    assert run_id in arts["mlflow-parent-run-details"].data

    again = pipeline(repo=str(tiny_repo), return_state=True)  # same as a second `dvc repro`
    assert again.result() == [{"stage": "one", "ran": False}, {"stage": "two", "ran": False}]


def test_failing_stage_fails_the_flow_with_its_message_and_a_rerun_reuses_the_cache(prefect_api, tiny_repo):
    failed = pipeline(repo=str(tiny_repo), params={"a.n": 7, "b.word": "fail"}, return_state=True)
    assert failed.is_failed()
    assert "stage 'two' failed" in failed.message and "two: the word 'fail' is not allowed" in failed.message
    runs = _task_runs(failed.state_details.flow_run_id)
    assert runs["one"].state.is_completed() and runs["two"].state.is_failed()
    assert runs["two"].run_count == 1, "a stage error must not be retried"
    one_mtime = (tiny_repo / "one.txt").stat().st_mtime_ns

    fixed = pipeline(repo=str(tiny_repo), params={"b.word": "fixed"}, return_state=True)
    assert fixed.result() == [{"stage": "one", "ran": False}, {"stage": "two", "ran": True}]
    assert (tiny_repo / "one.txt").stat().st_mtime_ns == one_mtime  # stage one's output reused
    assert json.loads((tiny_repo / "m.json").read_text())["score"] == 7 * len("fixed")


def test_unknown_param_override_fails_before_any_stage(prefect_api, tiny_repo):
    state = pipeline(repo=str(tiny_repo), params=["a.nn=3"], return_state=True)
    assert state.is_failed() and "params.yaml: cannot apply overrides ['a.nn=3']" in state.message


def test_force_reruns_and_exp_name_saves_a_dvc_experiment(prefect_api, tiny_repo):
    from flows import dvc_cli

    assert pipeline(repo=str(tiny_repo), return_state=True).is_completed()
    state = pipeline(repo=str(tiny_repo), targets=["one"], force=True, exp_name="forced-one", return_state=True)
    assert state.result() == [{"stage": "one", "ran": True}]
    listed = dvc_cli.run_command([dvc_cli.dvc_executable(), "exp", "list", "--name-only"], cwd=tiny_repo)
    assert "forced-one" in listed.split()


def _release_after_first_retry(lock, stop: threading.Event) -> None:
    """Hold ``lock`` until some task run of this session is awaiting its retry, then release it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStateName

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and not stop.is_set():
            waiting = client.read_task_runs(task_run_filter=TaskRunFilter(
                state=dict(name=TaskRunFilterStateName(any_=["AwaitingRetry", "Retrying"]))))
            if waiting:
                break
            time.sleep(0.5)
    lock.close()


@pytest.mark.slow
def test_a_held_dvc_lock_is_retried_not_failed(prefect_api, tiny_repo):
    import zc.lockfile

    lock = zc.lockfile.LockFile(str(tiny_repo / ".dvc" / "tmp" / "lock"))  # as a concurrent `dvc` would
    stop = threading.Event()
    releaser = threading.Thread(target=_release_after_first_retry, args=(lock, stop))
    releaser.start()
    try:
        state = pipeline(repo=str(tiny_repo), return_state=True)
    finally:
        stop.set()
        releaser.join()
    assert state.is_completed(), state.message
    runs = _task_runs(state.state_details.flow_run_id)
    assert max(r.run_count for r in runs.values()) == 2
