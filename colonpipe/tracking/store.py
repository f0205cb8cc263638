"""Where tracking data lives: the MLflow URI, the experiment, and local file locks.

Contract:
- ``tracking_uri()``: ``$MLFLOW_TRACKING_URI`` when set (a team points it at a shared
  server), else ``sqlite:///<root>/mlruns/mlflow.db``. ``<root>`` is ``$DVC_ROOT`` (DVC sets
  it to the *original* workspace for stage commands, also inside ``dvc exp run --temp`` /
  queued temp dirs, so experiments never write a throwaway store) or the working directory.
  Relative sqlite paths are resolved against ``<root>``.
- With a sqlite store, artifacts live next to the database: ``<db dir>/artifacts/<experiment>``.
- ``experiment_name()``: ``$MLFLOW_EXPERIMENT_NAME`` or ``"colonpipe"``.
- ``file_lock(name)``: an exclusive ``fcntl.flock``. For sqlite stores the lock files sit in
  ``<db dir>/.locks/``; for remote stores in the temp dir, which only serialises processes on
  *this* machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "colonpipe"
_SQLITE = "sqlite:///"


def project_root() -> Path:
    """The workspace the store belongs to: ``$DVC_ROOT`` or the working directory."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    """The MLflow tracking URI in effect (see the module docstring)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"{_SQLITE}mlruns/mlflow.db"
    db = sqlite_path(uri)
    return f"{_SQLITE}{db}" if db is not None else uri


def sqlite_path(uri: str) -> Optional[Path]:
    """The absolute database path of a ``sqlite:///`` URI (relative ones against the root)."""
    if not uri.startswith(_SQLITE):
        return None
    path = Path(uri[len(_SQLITE):])
    return path if path.is_absolute() else project_root() / path


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def lock_dir(uri: Optional[str] = None) -> Path:
    """Folder for lock files belonging to the store at ``uri``."""
    uri = uri or tracking_uri()
    db = sqlite_path(uri)
    if db is not None:
        path = db.parent / ".locks"
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"colonpipe-locks-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(name: str, *, uri: Optional[str] = None) -> Iterator[Path]:
    """Hold an exclusive lock ``<lock dir>/<name>.lock`` for the ``with`` block (blocks)."""
    path = lock_dir(uri) / f"{name}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for lock %s", path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=4)
def _client_for(uri: str) -> "MlflowClient":
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    # Two processes creating the schema of a fresh sqlite db at once can collide.
    with file_lock("init", uri=uri):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # forces schema creation/migration now
    return client


def get_client(uri: Optional[str] = None) -> "MlflowClient":
    """An ``MlflowClient`` bound to ``uri`` (default ``tracking_uri()``), store initialised."""
    return _client_for(uri or tracking_uri())


def artifact_location(uri: str, name: str) -> Optional[str]:
    """Where a new experiment keeps artifacts: next to a sqlite db, else the server decides."""
    db = sqlite_path(uri)
    return str(db.parent / "artifacts" / name) if db is not None else None


def get_experiment_id(client: "MlflowClient", name: Optional[str] = None) -> str:
    """Id of experiment ``name`` (default ``experiment_name()``), created when missing."""
    from mlflow.exceptions import MlflowException

    name = name or experiment_name()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location(client.tracking_uri, name)
        )
    except MlflowException:  # created concurrently by another stage
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
