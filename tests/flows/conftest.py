"""Shared fixtures for the flow tests: one Prefect test server, real DVC repos, a process pool.

- ``prefect_api``: ``prefect_test_harness`` once per session (about 13 s), its API URL.
- ``make_tiny_repo(root)``: a two-stage DVC git repo whose stages take milliseconds
  (``one`` writes ``a.n``; ``two`` scores ``b.word`` and refuses the word ``fail``).
- ``process_pool``: a ``process`` work pool served by two real ``prefect worker`` processes
  (``--limit 1`` each), for deployment runs, cancellation and shard fan-out.
- MLflow: each tiny repo has its own default store (``<repo>/mlruns/mlflow.db``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TWO_PY = """\
import json, yaml
p = yaml.safe_load(open("params.yaml"))
n = int(open("one.txt").read())
if p["b"]["word"] == "fail":
    raise SystemExit("two: the word 'fail' is not allowed")
json.dump({"score": n * len(p["b"]["word"]), "nested": {"len": len(p["b"]["word"])}}, open("m.json", "w"))
print("two done")
"""
ONE_CMD = "python -c \"import yaml;p=yaml.safe_load(open('params.yaml'));open('one.txt','w').write(str(p['a']['n']))\""


def sh(args: list[str], cwd: Path, **kw) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def git_init(root: Path) -> None:
    sh(["git", "init", "-q"], root)
    sh(["git", "config", "user.email", "tests@colonpipe"], root)
    sh(["git", "config", "user.name", "colonpipe tests"], root)
    sh(["git", "config", "commit.gpgsign", "false"], root)


def commit_all(root: Path, message: str) -> None:
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", message], root)


def make_tiny_repo(root: Path, *, extra_stages: str = "") -> Path:
    """A committed two-stage DVC repo in ``root`` (see module doc)."""
    root.mkdir(parents=True, exist_ok=True)
    git_init(root)
    (root / "params.yaml").write_text("a:\n  n: 3   # how many\nb:\n  word: hi\n")
    (root / "two.py").write_text(TWO_PY)
    (root / "dvc.yaml").write_text(
        "stages:\n"
        f"  one:\n    cmd: {ONE_CMD}\n    params: [a]\n    outs: [one.txt]\n"
        "  two:\n    cmd: python two.py\n    deps: [one.txt, two.py]\n    params: [b]\n"
        "    metrics: [{m.json: {cache: false}}]\n" + extra_stages
    )
    (root / ".gitignore").write_text("/mlruns/\n")
    sh([str(BIN / "dvc"), "init", "-q"], root)
    commit_all(root, "tiny pipeline")
    return root


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """A temporary Prefect server (sqlite) for the whole session; returns its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    return make_tiny_repo(tmp_path / "tiny")


@pytest.fixture(scope="module", autouse=True)
def _repo_default_mlflow_store():
    """Flow tests work in repo copies and read each copy's default store
    (``<copy>/mlruns/mlflow.db``), so the suite-wide throwaway store of tests/conftest.py is
    switched off around each flows module (module scope: before the module's repo fixtures)."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def _start_worker(name: str, pool: str, api: str, log: Path) -> subprocess.Popen:
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # see above
    env = dict(inherited, PREFECT_API_URL=api, PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_WORKER_PREFETCH_SECONDS="2", OMP_NUM_THREADS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "1",
         "--name", name],
        cwd=PROJECT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


@pytest.fixture(scope="session")
def process_pool(prefect_api, tmp_path_factory):
    """``(pool name, {worker name: log path})``: two live process workers on a fresh pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    pool = "colonpipe-test-pool"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    logs = tmp_path_factory.mktemp("workers")
    workers = {f"worker-{i}": logs / f"worker-{i}.log" for i in (1, 2)}
    procs = [_start_worker(n, pool, prefect_api, log) for n, log in workers.items()]
    deadline = time.monotonic() + 60
    while not all("started" in log.read_text() for log in workers.values()):
        assert time.monotonic() < deadline, "workers did not start: " + " | ".join(
            log.read_text()[-500:] for log in workers.values())
        assert all(p.poll() is None for p in procs), "a worker exited at start"
        time.sleep(0.5)
    yield pool, workers
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def deploy(entrypoint: str, name: str, pool: str) -> str:
    """Deploy ``entrypoint`` (from this checkout) to ``pool``; return ``"<flow>/<deployment>"``."""
    from prefect import flow

    fl = flow.from_source(source=str(PROJECT), entrypoint=entrypoint)
    fl.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False,
              ignore_warnings=True)
    return f"{fl.name}/{name}"


def copy_checkout(dst: Path) -> Path:
    """Tracked + untracked-not-ignored files of this checkout, as a fresh committed git repo."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=PROJECT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = PROJECT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    git_init(dst)
    return dst
