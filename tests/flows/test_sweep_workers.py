"""Sweeps that cannot hang: DVC queue workers that outlive their queue, as seen in CI.

The CI hang (issue 10): a `dvc exp queue-worker` logged "shutting down due to empty queue",
then never exited, and ignored SIGTERM; `dvc queue start` had handed it its stdout, so a
flow reading that pipe to EOF waited forever. Here the real `dvc queue start` spawns real
DVC workers (it finds `dvc` on PATH, as in CI) through a `dvc` that runs DVC's own worker
code and then lingers, deaf to SIGTERM. The sweep must still return promptly, with its
results, and leave no worker behind.

Slow (about 30 s): a real Prefect flow, two real DVC experiments, and the 10 s the sweep
gives a lingering worker (5 s after `dvc queue stop`, 5 s after SIGTERM) before SIGKILL.
"""

from __future__ import annotations

import os
import stat
import sys
import time

import psutil
import pytest

from flows import dvc_queue as dq
from flows.sweep import sweep

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LINGERING_DVC = f"""#!{sys.executable}
import signal, sys, threading
from dvc.cli import main

if sys.argv[1:3] != ["exp", "queue-worker"]:
    sys.exit(main(sys.argv[1:]))
main(sys.argv[1:])  # DVC's own queue worker: runs experiments until celery stops it
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # then it lingers, deaf to SIGTERM, as in CI
print("queue worker loop ended; lingering", flush=True)
threading.Event().wait()
"""


def _workers_of(node_prefix: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(a.startswith(node_prefix) for a in cmdline):
            found.append(proc)
    return found


def test_sweep_returns_and_kills_queue_workers_that_outlive_the_queue(prefect_api, tiny_repo, tmp_path,
                                                                      monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(LINGERING_DVC)
    (bin_dir / "dvc").chmod((bin_dir / "dvc").stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # what `dvc queue start` spawns

    start = time.monotonic()
    state = sweep(repo=str(tiny_repo), grid={"b.word": ["ab", "abc"]}, metric="score", jobs=2, name="linger",
                  return_state=True)
    took = time.monotonic() - start
    assert state.is_completed(), state.message
    out = state.result()
    assert out["best"] == "linger-2" and out["experiments"]["linger-2"]["metrics"]["m.json:score"] == 9

    wdir, node_prefix = dq.celery_dir(tiny_repo)
    worker_logs = {p.stem: p.read_text() for p in wdir.glob("dvc-exp-worker-*.out")}
    assert sorted(worker_logs) == ["dvc-exp-worker-1", "dvc-exp-worker-2"]
    assert any("succeeded" in text for text in worker_logs.values())  # they ran the experiments
    # each worker outlived the queue (its loop ended, it stayed), and the sweep killed it
    assert all("lingering" in text for text in worker_logs.values()), worker_logs
    assert not _workers_of(node_prefix), "a queue worker of the sweep's repo is still alive"
    assert not [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert took < 120, f"the sweep took {took:.0f}s"
