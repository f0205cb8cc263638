"""Deployment runs on a local process work pool with two workers: cancellation and shard fan-out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.flows.conftest import commit_all, deploy, make_tiny_repo

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SLEEPER = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open("pids.txt", "w").write(f"{os.getpid()} {child.pid}\\n")
time.sleep(600)
open("done.txt", "w").write("done")
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_cancelling_a_pipeline_run_stops_its_stage_processes(process_pool, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    pool, _ = process_pool
    repo = make_tiny_repo(tmp_path / "slow", extra_stages="  sleeper:\n    cmd: python sleeper.py\n"
                                                         "    deps: [sleeper.py]\n    outs: [done.txt]\n")
    (repo / "sleeper.py").write_text(SLEEPER)
    commit_all(repo, "a stage that takes ten minutes, with a grandchild")
    name = deploy("flows/pipeline.py:pipeline", "cancel-test", pool)
    run = run_deployment(name, parameters={"repo": str(repo), "targets": ["sleeper"]}, timeout=0)
    pids = _wait_for(lambda: (repo / "pids.txt").exists() and [int(p) for p in (repo / "pids.txt").read_text().split()],
                     240, "the stage to start")
    assert all(_alive(p) for p in pids)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
        final = _wait_for(lambda: (s := client.read_flow_run(run.id).state).is_final() and s, 120, "cancellation")
    assert final.is_cancelled(), final
    _wait_for(lambda: not any(_alive(p) for p in pids), 30, f"stage processes {pids} to exit")
    assert not (repo / "done.txt").exists()
    from colonpipe.tracking.store import get_client as mlflow_client

    store = mlflow_client(f"sqlite:///{repo}/mlruns/mlflow.db")
    parent = store.search_runs([store.get_experiment_by_name("colonpipe").experiment_id])[0]
    assert parent.data.tags["colonpipe.kind"] == "pipeline" and parent.info.status == "KILLED"


def _ran(worker_log: str, flow_run_id: str) -> bool:
    """The worker took the run (a worker that loses the race logs an aborted submission)."""
    return (f"submitting flow run '{flow_run_id}'" in worker_log
            and f"Aborted submission of flow run '{flow_run_id}'" not in worker_log)


@pytest.fixture(scope="module")
def shard_inputs(tmp_path_factory):
    """A tiny model, 12 records (one corrupt image) and an uninterrupted local run's output."""
    from colonpipe.infer.runner import InferJob, run_inference
    from colonpipe.model.base_model import build_base
    from colonpipe.params import ModelParams
    from tests.infer.conftest import make_dataset

    root = tmp_path_factory.mktemp("shards")
    model_dir = build_base(ModelParams(), corpus_files=[make_dataset(root / "corpus", 40)], out_dir=root / "model")
    data = make_dataset(root / "data", 12, corrupt=(5,))
    images = root / "data" / "images"
    reference = run_inference(InferJob(input_path=data, image_root=images, model_dir=Path(model_dir),
                                       out_path=root / "ref" / "test_pred_cls.json",
                                       journal_dir=root / "ref" / ".shards", max_new_tokens=12,
                                       batch_size=4, num_shards=1, cpu_threads=1))
    kwargs = dict(input_path=str(data), image_root=str(images), model_dir=str(model_dir), num_shards=2,
                  max_new_tokens=12, batch_size=4, threads=1)
    return kwargs, reference.path.read_bytes()


def test_two_shards_run_on_the_pool_workers_and_merge_like_a_local_run(process_pool, shard_inputs, tmp_path):
    from flows.infer_shards import infer_sharded

    pool, worker_logs = process_pool
    kwargs, reference = shard_inputs
    name = deploy("flows/infer_shards.py:infer_shard", "shard-test", pool)
    out = tmp_path / "pool" / "test_pred_cls.json"
    result = infer_sharded(**kwargs, out_path=str(out), deployment=name, timeout_s=600)
    assert result["records"] == 12 and result["errors"] == 1  # the corrupt image is an error record
    assert out.read_bytes() == reference
    runs = {s["flow_run_id"] for s in result["shards"]}
    assert len(runs) == 2
    took = {w: sum(_ran(log.read_text(), r) for r in runs) for w, log in worker_logs.items()}
    # Each shard ran exactly once, on the pool's workers. Which worker takes which run is Prefect's
    # scheduling: a worker that finishes a tiny shard first may take the second one too (seen in CI
    # while the other worker waited on the ephemeral server's sqlite lock), so no 1+1 split is asserted.
    assert sum(took.values()) == 2, f"each shard should run once on the pool: {took}"


def test_shards_as_local_task_runs_resume_and_merge_the_same(prefect_api, shard_inputs, tmp_path):
    from colonpipe.infer.journal import journal_path
    from flows.infer_shards import infer_sharded

    kwargs, reference = shard_inputs
    out = tmp_path / "local" / "test_pred_cls.json"
    first = infer_sharded(**kwargs, out_path=str(out))
    assert out.read_bytes() == reference and [s["done"] + s["errors"] for s in first["shards"]] == [6, 6]
    journal = journal_path(out.parent / f".shards-{out.stem}", 1, 2)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:2]))  # shard 1 "died" after a couple of batches
    out.unlink()
    again = infer_sharded(**kwargs, out_path=str(out))
    assert out.read_bytes() == reference
    assert again["shards"][0]["done"] == 0 and 0 < again["shards"][1]["done"] < 6
