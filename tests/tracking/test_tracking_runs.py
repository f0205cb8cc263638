"""Parent/child runs across real separate processes: env-provided parent, `dvc repro`, `dvc exp run`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from colonpipe.tracking import pipeline_parent
from colonpipe.tracking.store import experiment_name

pytestmark = pytest.mark.integration

STAGE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import yaml
    from colonpipe.tracking import stage_run

    name, inputs, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    p = yaml.safe_load(Path("params.yaml").read_text())["p"] if Path("params.yaml").exists() else 0
    with stage_run(name, params={"p": p}, inputs=inputs) as log:
        log.log_metrics({"value": float(p)})
        Path(out).write_text(f"{name} {p}\\n")
    """
)


def _children(client: MlflowClient, parent_id: str) -> list:
    exp = client.get_experiment_by_name(experiment_name())
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_flow_parent_is_shared_by_separate_processes(tracking_env, venv_env, git_repo):
    client = MlflowClient(tracking_env)
    (git_repo / "stage.py").write_text(STAGE_SCRIPT)
    with pipeline_parent("flow") as parent:
        env = venv_env()  # carries COLONPIPE_PARENT_RUN_ID
        procs = [subprocess.Popen([sys.executable, "stage.py", name, f"{name}.out"], env=env)
                 for name in ("first", "second")]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        assert client.get_run(parent).info.status == "RUNNING"  # stages do not end the flow's run
    children = _children(client, parent)
    assert sorted(r.info.run_name for r in children) == ["first", "second"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert client.get_run(parent).info.status == "FINISHED"
    assert "COLONPIPE_PARENT_RUN_ID" not in os.environ


DVC_YAML = textwrap.dedent(
    """
    stages:
      a:
        cmd: python stage.py a a.txt
        params: [p]
        outs: [a.txt]
      b:
        cmd: python stage.py b a.txt b.txt
        deps: [a.txt]
        outs: [b.txt]
    """
)


def _dvc(args: list[str], cwd: Path, env: dict) -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _parents(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name(experiment_name())
    runs = client.search_runs([exp.experiment_id], "tags.`colonpipe.pipeline_key` != ''",
                              order_by=["attributes.start_time ASC"])
    return runs


def test_dvc_repro_and_exp_run_each_get_one_parent_with_stage_children(tracking_env, venv_env, git_repo):
    env = venv_env(DVC_NO_ANALYTICS="1")
    (git_repo / "stage.py").write_text(STAGE_SCRIPT)
    (git_repo / "params.yaml").write_text("p: 1\n")
    (git_repo / "dvc.yaml").write_text(DVC_YAML)
    _dvc(["init", "-q"], git_repo, env)
    subprocess.run(["git", "add", "-A"], cwd=git_repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline"],
                   cwd=git_repo, check=True)
    _dvc(["repro"], git_repo, env)

    client = MlflowClient(tracking_env)
    (parent,) = _parents(client)
    assert parent.info.status == "FINISHED"
    kids = {r.info.run_name: r for r in _children(client, parent.info.run_id)}
    assert set(kids) == {"a", "b"}
    lock = (git_repo / "dvc.lock").read_text()
    a_md5 = lock.split("path: a.txt")[1].split("md5: ")[1].split()[0]
    assert kids["b"].data.tags["colonpipe.input.a.txt"] == f"md5:{a_md5}"  # from a's lock entry
    assert a_md5 in kids["a"].data.tags["colonpipe.dvc_lock"]  # backfilled by b once DVC wrote it

    with pipeline_parent("sweep") as sweep:  # an experiment gets its own parent, under the sweep
        _dvc(["exp", "run", "-S", "p=2", "-n", "p2"], git_repo, venv_env(DVC_NO_ANALYTICS="1"))
    first, second = _parents(client)
    assert first.info.run_id == parent.info.run_id and second.info.run_id != parent.info.run_id
    assert second.data.tags["colonpipe.dvc_exp_name"] == "p2"
    assert second.data.tags["mlflow.parentRunId"] == sweep
    kids = {r.info.run_name: r for r in _children(client, second.info.run_id)}
    assert set(kids) == {"a", "b"} and kids["a"].data.params == {"p": "2"}
