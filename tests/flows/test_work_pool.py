"""Deployment runs on a local process work pool with two workers: cancellation and shard fan-out."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.flows.conftest import commit_all, deploy, make_tiny_repo

pytestmark = pytest.mark.slow

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


def _ran(worker_log: str, flow_run_id: str) -> bool:
    """The worker took the run (a worker that loses the race logs an aborted submission)."""
    return (f"submitting flow run '{flow_run_id}'" in worker_log
            and f"Aborted submission of flow run '{flow_run_id}'" not in worker_log)


def test_two_shards_run_on_two_workers_and_merge_like_a_local_run(process_pool, tmp_path):
    from colonpipe.infer.runner import InferJob, run_inference
    from colonpipe.model.presets import build_base
    from colonpipe.params import ModelParams
    from flows.infer_shards import infer_sharded
    from tests.infer.conftest import make_dataset

    pool, worker_logs = process_pool
    model_dir = build_base(ModelParams(), corpus_files=[make_dataset(tmp_path / "corpus", 40)],
                           out_dir=tmp_path / "model")
    data = make_dataset(tmp_path / "data", 12, corrupt=(5,))
    images = tmp_path / "data" / "images"
    reference = run_inference(InferJob(input_path=data, image_root=images, model_dir=Path(model_dir),
                                       out_path=tmp_path / "ref" / "test_pred_cls.json",
                                       journal_dir=tmp_path / "ref" / ".shards", max_new_tokens=12,
                                       batch_size=4, num_shards=1, cpu_threads=1))
    name = deploy("flows/infer_shards.py:infer_shard", "shard-test", pool)
    out = tmp_path / "pool" / "test_pred_cls.json"
    result = infer_sharded(input_path=str(data), image_root=str(images), model_dir=str(model_dir),
                           out_path=str(out), num_shards=2, max_new_tokens=12, batch_size=4, threads=1,
                           deployment=name, timeout_s=600)
    assert result["records"] == 12 and result["errors"] == 1  # the corrupt image is an error record
    assert out.read_bytes() == reference.path.read_bytes()
    runs = {s["flow_run_id"] for s in result["shards"]}
    assert len(runs) == 2
    took = {w: sum(_ran(log.read_text(), r) for r in runs) for w, log in worker_logs.items()}
    assert sorted(took.values()) == [1, 1], f"each worker should run one shard: {took}"
    records = json.loads(out.read_text())
    assert [r["id"] for r in records] == [r["id"] for r in json.loads(data.read_text())]
