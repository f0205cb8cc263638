"""Where tracking data lives: the MLflow URI, the experiment, and local file locks.

Contract:
- ``tracking_uri(root=None)``, the one resolver stages, flows and commands use:
  ``$MLFLOW_TRACKING_URI`` when set (a team points it at a shared server), else
  ``sqlite:///<root>/mlruns/mlflow.db``. ``<root>`` is the given project folder (a flow names
  the repo it drives), else ``$DVC_ROOT`` (DVC sets it to the *original* workspace for stage
  commands, also inside ``dvc exp run --temp`` / queued temp dirs, so experiments never write a
  throwaway store), else the working directory. Relative sqlite paths resolve against ``<root>``.
- With a sqlite store, artifacts live next to the database: ``<db dir>/artifacts/<experiment>``.
- ``experiment_name()``: ``$MLFLOW_EXPERIMENT_NAME`` or ``"colonpipe"``.
- ``canonical_uri(uri)``: one spelling per store, so every spelling shares one lock:
  ``sqlite:///./a.db``, ``SQLite:////abs/a.db`` and a symlinked path give the same
  ``sqlite:////abs/a.db``; for servers the scheme and host are lower-cased, credentials,
  default ports, query and trailing slashes dropped (``HTTP://Host:80/`` == ``http://host``).
- ``is_remote(uri)``: the store can be written by other machines (anything but a local
  sqlite file or folder): the registry then re-reads what it wrote (``registry.promote``).
- ``file_lock(name, timeout_s=...)``: an exclusive ``fcntl.flock`` that gives up with
  ``TimeoutError`` naming the lock file after ``timeout_s``. For sqlite stores the lock files
  sit in ``<db dir>/.locks/``; for other stores in the temp dir (keyed by the canonical URI),
  which only serialises processes on *this* machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import tempfile
import time
from urllib.parse import urlsplit
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


def tracking_uri(root: str | Path | None = None) -> str:
    """The MLflow tracking URI in effect for the project at ``root`` (see the module docstring)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"{_SQLITE}mlruns/mlflow.db"
    db = sqlite_path(uri, root)
    if db is None:
        return uri
    query = urlsplit(uri).query  # sqlite options (e.g. ?timeout=30) reach the client unchanged
    return f"{_SQLITE}{db}" + (f"?{query}" if query else "")


def sqlite_path(uri: str, root: str | Path | None = None) -> Optional[Path]:
    """The absolute database path of a ``sqlite:///`` URI (relative ones against ``root``,
    default :func:`project_root`; scheme in any case, query dropped, symlinks not resolved)."""
    uri = uri.strip()
    if uri[: len(_SQLITE)].lower() != _SQLITE:
        return None
    path = Path(uri[len(_SQLITE):].split("?", 1)[0])
    return path if path.is_absolute() else (Path(root).resolve() if root is not None else project_root()) / path


_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_LOCAL_SCHEMES = {"sqlite", "file", ""}
_BARE_SCHEMES = {"databricks", "databricks-uc", "uc"}  # MLflow reads these alone as "default profile"


def _local_path(path: str) -> str:
    """A local store path, absolute (against the root) and with symlinks resolved."""
    p = Path(path)
    return str((p if p.is_absolute() else project_root() / p).resolve())


def canonical_uri(uri: str) -> str:
    """One spelling per store (see the module docstring); used to key locks, never to connect."""
    uri = uri.strip()
    db = sqlite_path(uri)
    if db is not None:
        return f"{_SQLITE}{db.resolve()}"
    if uri.lower() in _BARE_SCHEMES:
        return f"{uri.lower()}://"
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().split("+", 1)[0]  # postgresql+psycopg2 is postgresql
    if scheme in ("", "file") or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return "file://" + _local_path(parts.path if scheme == "file" else uri)
    host = (parts.hostname or "") if scheme in _DEFAULT_PORTS else parts.netloc.rsplit("@", 1)[-1]
    if scheme in _DEFAULT_PORTS:
        host = host.lower()
        try:
            port = parts.port
        except ValueError:  # a malformed port: keep the text, the client will complain
            port = None
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            host = f"{host}:{port}"
    path = "/".join(seg for seg in parts.path.split("/") if seg)
    return f"{scheme}://{host}" + (f"/{path}" if path else "")


def is_remote(uri: str) -> bool:
    """True unless ``uri`` is a local sqlite database or a local folder store."""
    return urlsplit(canonical_uri(uri)).scheme not in _LOCAL_SCHEMES


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def lock_dir(uri: Optional[str] = None) -> Path:
    """Folder for lock files belonging to the store at ``uri`` (the same for every spelling)."""
    canonical = canonical_uri(uri or tracking_uri())
    db = sqlite_path(canonical)
    if db is not None:
        path = db.parent / ".locks"
    else:
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"colonpipe-locks-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


LOCK_TIMEOUT_S = 900.0  # longer than any holder needs (a promotion, a schema migration)


@contextlib.contextmanager
def file_lock(name: str, *, uri: Optional[str] = None, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold an exclusive lock ``<lock dir>/<name>.lock`` for the ``with`` block.

    Waits at most ``timeout_s`` seconds for another holder, then raises ``TimeoutError``
    naming the lock file (its holder is stuck or dead-locked: nothing was changed).
    """
    path = lock_dir(uri) / f"{name}.lock"
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as fh:
        waiting = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path}: still held by another process after {timeout_s:.0f} s") from None
                if not waiting:
                    logger.info("waiting for lock %s", path)
                    waiting = True
                time.sleep(0.05)
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
