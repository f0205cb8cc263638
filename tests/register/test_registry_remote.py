"""Promotion against a real MLflow tracking server over HTTP, with writers that do not share
a file lock (separate ``TMPDIR``s: as on two machines).

- A writer whose ``champion`` is overwritten by another writer after it set it re-reads,
  re-judges against the newcomer and restores itself only if it beats it.
- Two writers released together converge on the better model with a consistent chain.

One ``mlflow server`` (sqlite backend, one worker) serves the module. Slow (about 35 s on
an idle 2-core box, 65 s on a busy one): the server takes 10-30 s to start and every writer
is a fresh interpreter importing MLflow; nothing short of a real server and separate
processes shows what two machines do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from colonpipe.params import RegisterParams
from colonpipe.register.registry import CHAMPION, PREV_CHAMPION_TAG, PREVIOUS, alias_version, promote, register_candidate
from colonpipe.tracking.store import is_remote
from flows.dvc_cli import kill_group

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """URI of a live ``mlflow server`` (stopped, process group and all, after the module)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port, log = _free_port(), root / "server.log"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"mlflow server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"mlflow server not up after 120 s:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        yield uri
    finally:
        kill_group(proc, grace_s=20)  # the server's whole process group, every wait with a deadline


WRITER = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from colonpipe.params import RegisterParams
    from colonpipe.register.registry import promote, register_candidate
    from colonpipe.tracking.store import get_client

    verify_s, go, machine = float(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    client = get_client()
    jobs = []
    for spec in sys.argv[4:]:  # name=accuracy: one candidate each, promoted in its own thread
        name, cls = spec.split("=")
        metrics = {"test.cls.accuracy": float(cls)}
        run = client.create_run("0")  # a server only accepts a version source inside a run's artifacts
        mv = register_candidate(client, name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                metrics=metrics)
        cfg = RegisterParams(model_name=name, remote_verify_s=verify_s)
        out = machine / f"registry-{name}-{cls}.json"
        jobs.append(threading.Thread(target=promote, args=(client, cfg, str(mv.version), metrics),
                                     kwargs={"registry_path": out}))
        Path(f"{go}.ready.{name}.{cls}").write_text(str(mv.version))
    deadline = time.monotonic() + 120
    while not go.exists():  # start line
        if time.monotonic() > deadline:
            sys.exit("no start signal within 120 s")
        time.sleep(0.01)
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
        assert not job.is_alive(), "promote did not finish within 120 s"
    """
)


def _writer(venv_env, server: str, tmp: Path, machine: str, verify_s: float, go: Path,
            candidates: list[tuple[str, float]]) -> subprocess.Popen:
    """A writer process as on its own machine: own TMPDIR (so its own file locks), own decision logs."""
    root = tmp / machine
    (root / "tmp").mkdir(parents=True)
    env = venv_env(MLFLOW_TRACKING_URI=server, TMPDIR=str(root / "tmp"))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(verify_s), str(go), str(root),
                             *(f"{n}={c}" for n, c in candidates)], env=env, cwd=root)


def _ready(go: Path, keys: list[tuple[str, float]], writers: list[subprocess.Popen]) -> dict[tuple[str, float], str]:
    """Wait until every candidate is registered; ``{(model, accuracy): version}``."""
    files = {key: Path(f"{go}.ready.{key[0]}.{key[1]}") for key in keys}
    deadline = time.monotonic() + 120
    while not all(f.exists() for f in files.values()):
        assert time.monotonic() < deadline, "writers not ready within 120 s"
        assert all(p.poll() is None for p in writers), "a writer died before the start line"
        time.sleep(0.05)
    return {key: f.read_text() for key, f in files.items()}


def _wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _decision(tmp: Path, machine: str, name: str, cls: float) -> dict:
    return json.loads((tmp / machine / f"registry-{name}-{cls}.json").read_text())["decisions"][-1]


def _candidate(client: MlflowClient, name: str, cls: float):
    """A version of ``name`` scored ``cls`` (its source inside a real run's artifacts, as a server requires)."""
    run = client.create_run("0")
    return register_candidate(client, name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                              metrics={"test.cls.accuracy": cls})


def _seed_champion(client: MlflowClient, name: str, tmp: Path) -> str:
    cfg = RegisterParams(model_name=name, remote_verify_s=0.0)
    mv = _candidate(client, name, 0.5)
    assert promote(client, cfg, str(mv.version), {"test.cls.accuracy": 0.5}, registry_path=tmp / "seed.json").promoted
    return str(mv.version)


def _finish(writers: list[subprocess.Popen]) -> None:
    assert [p.wait(timeout=120) for p in writers] == [0] * len(writers)


def test_an_overwritten_champion_is_re_judged_against_the_writer_that_moved_it(server, venv_env, tmp_path):
    """Writer A sets ``champion`` and waits 4 s before re-reading it; meanwhile writer B (this
    process), which had judged against the old champion, moves it to its own version. A
    re-judges: it restores itself over a worse B (model ``worse``), leaves a better B (``better``)."""
    assert is_remote(server)
    client = MlflowClient(server)
    seeds = {name: _seed_champion(client, name, tmp_path) for name in ("r_worse", "r_better")}
    go = tmp_path / "go"
    keys = [(name, 0.7) for name in seeds]
    writers = [_writer(venv_env, server, tmp_path, "a", 4.0, go, keys)]
    versions = _ready(go, keys, writers)
    go.touch()
    for (name, _), a in list(versions.items()):
        _wait_for(lambda: alias_version(client, name, CHAMPION) == a, f"{name}: writer A's write")
        b = _candidate(client, name, 0.6 if name == "r_worse" else 0.9)
        client.set_registered_model_alias(name, PREVIOUS, seeds[name])  # what B, judging vs the seed, writes
        client.set_registered_model_alias(name, CHAMPION, b.version)
        versions[name, "b"] = str(b.version)
    _finish(writers)

    a, b = versions["r_worse", 0.7], versions["r_worse", "b"]
    d = _decision(tmp_path, "a", "r_worse", 0.7)
    assert d["promoted"] and f"another writer set champion to v{b} after v{a} was set" in d["reason"]
    assert (alias_version(client, "r_worse", CHAMPION), alias_version(client, "r_worse", PREVIOUS)) == (a, b)
    assert client.get_model_version("r_worse", a).tags[PREV_CHAMPION_TAG] == b  # rollback goes to B

    a, b = versions["r_better", 0.7], versions["r_better", "b"]
    d = _decision(tmp_path, "a", "r_better", 0.7)
    assert not d["promoted"] and "does not beat champion 0.9" in d["reason"] and f"v{b}" in d["reason"]
    assert (alias_version(client, "r_better", CHAMPION), alias_version(client, "r_better", PREVIOUS)) == (b, seeds["r_better"])
    assert PREV_CHAMPION_TAG not in client.get_model_version("r_better", a).tags  # never a real champion


def test_two_writers_released_together_converge_on_the_better_model(server, venv_env, tmp_path):
    """Two machines promote 0.6 and 0.7 over a 0.5 champion at the same moment. Whatever the
    interleaving, the end state is one a serial order gives: 0.7 is champion, its recorded
    predecessor is the ``previous`` alias, and that chain walks back to the seed."""
    client = MlflowClient(server)
    name = "r_race"
    seed = _seed_champion(client, name, tmp_path)
    go = tmp_path / "go"
    # 4 s: far longer than any read-to-write gap, even on a loaded 2-core box (the documented bound)
    writers = [_writer(venv_env, server, tmp_path, f"m{cls}", 4.0, go, [(name, cls)]) for cls in (0.6, 0.7)]
    versions = _ready(go, [(name, 0.6), (name, 0.7)], writers)
    go.touch()  # both are warm with the server open: release them together
    _finish(writers)

    slow, fast = versions[name, 0.6], versions[name, 0.7]
    champion, previous = alias_version(client, name, CHAMPION), alias_version(client, name, PREVIOUS)
    assert champion == fast and previous in (seed, slow)
    assert client.get_model_version(name, fast).tags[PREV_CHAMPION_TAG] == previous
    if previous == slow:  # serial order "0.6, then 0.7 over it": 0.6's own predecessor is the seed
        assert client.get_model_version(name, slow).tags[PREV_CHAMPION_TAG] == seed
    winner = _decision(tmp_path, "m0.7", name, 0.7)
    assert winner["promoted"] and winner["champion_after"] == fast
    assert _decision(tmp_path, "m0.6", name, 0.6)["candidate_version"] == slow
