"""Parent/child runs: one parent per pipeline execution, one child per stage.

How a stage finds its parent (``resolve_parent``):
1. ``$COLONPIPE_PARENT_RUN_ID`` when set (``pipeline_parent`` sets it): Prefect flows and
   sweeps open the parent and pass it down; they also end it. Inside a DVC *experiment*
   (``$DVC_EXP_NAME`` set, e.g. a sweep's queued ``dvc exp run``) the experiment still gets
   its own parent (rule 2), nested under that run: sweep -> experiment -> stages.
2. Otherwise the *pipeline key* of the DVC invocation running us: host, pid and start time
   of the nearest ancestor process whose command line is ``dvc ...`` (read from ``/proc``),
   plus ``$DVC_EXP_NAME``. Every stage of one ``dvc repro`` shares it; each ``dvc exp run``
   (and each queued ``dvc exp exec-run``) gets its own. The parent tagged with that key is
   found or created under a file lock, so two stages never create two parents. Such a
   parent is marked FINISHED after each child (FAILED if a child fails) and RUNNING again
   when the next child opens.
3. No DVC ancestor and no env var (a stage run by hand): the stage run is top-level.

Flows and sweeps open their parents with ``open_run`` (a ``RunRef``: ids, URI, browser URL),
hand them to stage subprocesses with ``parent_env`` and end them with ``close_run``;
``pipeline_parent`` is the same as a context manager for in-process stages.

``stage_run`` opens the child, records lineage, makes it MLflow's active run (so MLflow's
fluent API, e.g. ``mlflow.pyfunc.log_model``, logs into it) and yields an ``MlflowLogger``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence

from colonpipe.tracking import lineage as lin
from colonpipe.tracking.logger import MlflowLogger
from colonpipe.tracking.store import file_lock, get_client, get_experiment_id, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

PARENT_ENV = "COLONPIPE_PARENT_RUN_ID"
KEY_TAG = "colonpipe.pipeline_key"
PARENT_TAG = "mlflow.parentRunId"
LOCK_TAG = "colonpipe.dvc_lock"


UI_URL_ENV = "COLONPIPE_MLFLOW_UI_URL"  # where `mlflow ui` serves, for links from Prefect


@dataclass(frozen=True)
class RunRef:
    """An MLflow run a flow created: ids, tracking URI and a browser URL."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    url: str

    def logger(self) -> MlflowLogger:
        """The project's ``RunLogger`` writing to this run."""
        return MlflowLogger(get_client(self.tracking_uri), self.run_id)


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """Browser URL of a run: the tracking server itself, else ``$COLONPIPE_MLFLOW_UI_URL``."""
    base = uri if uri.startswith(("http://", "https://")) else os.environ.get(UI_URL_ENV, "http://127.0.0.1:5000")
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def open_run(
    uri: str, *, run_name: str, experiment: Optional[str] = None, experiment_id: Optional[str] = None,
    tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None,
) -> RunRef:
    """Create a RUNNING run at tracking ``uri`` in ``experiment_id`` or ``experiment`` (default:
    the project's experiment, created if missing), optionally nested under ``parent_run_id``."""
    client = get_client(uri)
    exp_id = experiment_id or get_experiment_id(client, experiment)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    return RunRef(run.info.run_id, exp_id, uri, run_url(uri, exp_id, run.info.run_id))


def close_run(run: RunRef, *, ok: bool, killed: bool = False) -> None:
    """Mark ``run`` FINISHED, FAILED or (cancelled / interrupted) KILLED."""
    status = "FINISHED" if ok else "KILLED" if killed else "FAILED"
    get_client(run.tracking_uri).set_terminated(run.run_id, status)


def parent_env(run: RunRef) -> dict[str, str]:
    """Environment a stage subprocess needs to log as a child of ``run``."""
    return {PARENT_ENV: run.run_id, "MLFLOW_TRACKING_URI": run.tracking_uri}


@dataclass(frozen=True)
class Parent:
    run_id: str
    owned: bool  # True: we manage its status (key-based); False: an outer flow owns it


def _proc_stat(pid: int) -> tuple[int, str]:
    """(parent pid, start time in clock ticks) from ``/proc/<pid>/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces/parens
    return int(fields[1]), fields[19]


def _is_dvc(argv: Sequence[str]) -> bool:
    """``dvc ...``, ``python /path/bin/dvc ...`` or ``python -m dvc ...``."""
    if not argv:
        return False
    if Path(argv[0]).name == "dvc":
        return True
    if Path(argv[0]).name.startswith("python") and len(argv) > 1:
        return Path(argv[1]).name == "dvc" or list(argv[1:3]) == ["-m", "dvc"]
    return False


def dvc_ancestor(pid: Optional[int] = None) -> Optional[tuple[int, str, list[str]]]:
    """(pid, start ticks, argv) of the nearest ancestor running DVC, or None."""
    try:
        current = _proc_stat(pid or os.getpid())[0]
        while current > 1:
            argv = Path(f"/proc/{current}/cmdline").read_bytes().split(b"\0")
            argv = [a.decode(errors="replace") for a in argv if a]
            ppid, start = _proc_stat(current)
            if _is_dvc(argv):
                return current, start, argv
            current = ppid
    except (OSError, ValueError, IndexError):
        return None  # no /proc (not Linux) or the process vanished
    return None


def pipeline_key() -> Optional[tuple[str, str]]:
    """(key, dvc command line) identifying the DVC invocation running us, or None."""
    found = dvc_ancestor()
    if found is None:
        return None
    pid, start, argv = found
    exp = os.environ.get("DVC_EXP_NAME", "")
    i = next(i for i, a in enumerate(argv) if a == "dvc" or Path(a).name == "dvc")
    return f"{socket.gethostname()}:{pid}:{start}:{exp}", " ".join(["dvc", *argv[i + 1 :]])


def resolve_parent(client: "MlflowClient", experiment_id: str) -> Optional[Parent]:
    """The parent run for a stage starting now (see module doc), or None."""
    env_id = os.environ.get(PARENT_ENV)
    if env_id:
        from mlflow.exceptions import MlflowException

        try:
            client.get_run(env_id)
        except MlflowException:
            raise RuntimeError(f"${PARENT_ENV}={env_id}: no such run in {client.tracking_uri}") from None
    found = pipeline_key()
    if env_id and not (found and os.environ.get("DVC_EXP_NAME")):
        return Parent(env_id, owned=False)
    if found is None:
        return None
    key, command = found
    with file_lock("parent-run", uri=client.tracking_uri):
        runs = client.search_runs(
            [experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1
        )
        if runs:
            client.update_run(runs[0].info.run_id, status="RUNNING")
            return Parent(runs[0].info.run_id, owned=True)
        tags = {KEY_TAG: key, "colonpipe.dvc_command": command}
        exp = os.environ.get("DVC_EXP_NAME")
        if exp:
            tags["colonpipe.dvc_exp_name"] = exp
        if env_id:
            tags[PARENT_TAG] = env_id
        run = client.create_run(experiment_id, run_name=f"{command} ({exp})" if exp else command, tags=tags)
        logger.info("opened parent run %s for %r", run.info.run_id, command)
        return Parent(run.info.run_id, owned=True)


@contextlib.contextmanager
def pipeline_parent(run_name: str, *, tags: Optional[Mapping[str, str]] = None,
                    uri: Optional[str] = None) -> Iterator[str]:
    """``open_run`` as a context manager: yields the run id; stages started inside (in this
    process or as subprocesses) become its children through ``$COLONPIPE_PARENT_RUN_ID``.

    Nests under an enclosing ``$COLONPIPE_PARENT_RUN_ID`` (a sweep around pipelines). The run
    ends FINISHED, or FAILED when the block raises; the env var is restored afterwards.
    """
    outer = os.environ.get(PARENT_ENV)
    run = open_run(uri or tracking_uri(), run_name=run_name, tags=tags, parent_run_id=outer)
    os.environ[PARENT_ENV] = run.run_id
    ok = False
    try:
        yield run.run_id
        ok = True
    finally:
        close_run(run, ok=ok)
        if outer:
            os.environ[PARENT_ENV] = outer
        else:
            os.environ.pop(PARENT_ENV, None)


def backfill_lock_entries(client: "MlflowClient", parent_id: str, lock: Mapping[str, Any]) -> int:
    """Tag finished sibling runs with their now-written ``dvc.lock`` entry; return how many.

    DVC writes a stage's lock entry only after its command exits, so a stage cannot log its
    own; the next stage of the same pipeline does it here.
    """
    import json

    done = 0
    for run in client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and attributes.status = 'FINISHED'",
    ):
        stage = run.data.tags.get("colonpipe.stage")
        if stage and LOCK_TAG not in run.data.tags and lin.lock_key(stage) in lock:
            entry = json.dumps(lock[lin.lock_key(stage)], sort_keys=True, default=str)
            client.set_tag(run.info.run_id, LOCK_TAG, entry[:8000])
            done += 1
    return done


def _open_child(client, experiment_id, stage, parent, lineage) -> MlflowLogger:
    tags = lin.lineage_tags(lineage)
    if parent is not None:
        tags[PARENT_TAG] = parent.run_id
    run = client.create_run(experiment_id, run_name=stage)
    log = MlflowLogger(client, run.info.run_id)
    log.set_tags(tags)
    log.log_params(lineage["params"])
    log.log_json(lineage, "lineage/lineage.json")
    return log


def _finish(client, log: MlflowLogger, parent: Optional[Parent], status: str) -> None:
    client.set_terminated(log.run_id, status)
    if parent is not None and parent.owned:
        client.set_terminated(parent.run_id, status)


@contextlib.contextmanager
def stage_run(
    stage: Optional[str] = None,
    *,
    params: Optional[Mapping[str, Any]] = None,
    inputs: Sequence[str | Path] = (),
    lockfile: str | Path = "dvc.lock",
    client: Optional["MlflowClient"] = None,
) -> Iterator[MlflowLogger]:
    """Open the MLflow run of one stage execution as a child of the pipeline's parent.

    ``stage`` defaults to ``$DVC_STAGE`` (set by DVC) or the script name. ``params`` are flat
    dotted keys; ``inputs`` are the paths the stage reads (hashed for lineage, relative to
    the working directory, where ``lockfile`` is read too). The run ends FINISHED, or
    FAILED when the block raises.
    """
    import mlflow

    stage = stage or os.environ.get("DVC_STAGE") or Path(sys.argv[0]).stem
    client = client or get_client()
    experiment_id = get_experiment_id(client)
    parent = resolve_parent(client, experiment_id)
    cwd = Path.cwd()
    lineage = lin.stage_lineage(
        stage, params=params or {}, inputs=inputs, root=cwd, lockfile=cwd / lockfile
    )
    if parent is not None:
        backfill_lock_entries(client, parent.run_id, lin.read_lock(cwd / lockfile))
    log = _open_child(client, experiment_id, stage, parent, lineage)
    logger.info("stage %s: MLflow run %s (parent %s)", stage, log.run_id, parent and parent.run_id)
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(run_id=log.run_id, nested=mlflow.active_run() is not None):
            yield log
    except BaseException:
        _finish(client, log, parent, "FAILED")
        raise
    _finish(client, log, parent, "FINISHED")
