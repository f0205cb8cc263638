"""A model reference -> a local model folder: a path as it is, or a registered model downloaded once.

``resolve_model(ref)`` accepts
- a folder (a saved ColonGPT or a training output such as ``models/finetune/final``): returned
  as it is;
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: resolved in the project's MLflow
  store (``colonpipe.tracking.store.tracking_uri()``) to one version, whose pyfunc
  ``model_dir`` artifact (see :mod:`colonpipe.register.pyfunc`) is downloaded into
  ``<cache>/registry/<store digest>/<name>/v<version>/`` and reused by later calls. A
  registered version never changes, so the cache needs no invalidation. The download goes to a
  temporary folder renamed into place, so an interrupted one leaves nothing that looks complete.

The cache root is ``$COLONPIPE_CACHE``, else ``$XDG_CACHE_HOME/colonpipe``, else
``~/.cache/colonpipe``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from colonpipe.register.pyfunc import ARTIFACT_KEY
from colonpipe.tracking.store import get_client, tracking_uri

logger = logging.getLogger(__name__)

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


class ModelRefError(ValueError):
    """A model reference that names no usable model; the message says which and why."""


def cache_root() -> Path:
    """Where downloaded registry models are kept (see the module docstring)."""
    if os.environ.get("COLONPIPE_CACHE"):
        return Path(os.environ["COLONPIPE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "colonpipe"


def _version(ref: str) -> tuple[str, str]:
    """``(name, version)`` of a ``models:/`` URI, the alias looked up in the registry."""
    match = _URI.match(ref)
    if match is None:
        raise ModelRefError(f"{ref}: expected models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, version = match["name"], match["alias"], match["version"]
    client = get_client()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelRefError(f"{ref}: not found in the MLflow store {tracking_uri()} ({exc.message})") from None
    return name, str(mv.version)


def _artifact_path(name: str, version: str, scratch: Path) -> str:
    """The ``model_dir`` artifact's path inside the logged model, read from its MLmodel file."""
    uri = tracking_uri()
    mlmodel = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}/MLmodel", dst_path=str(scratch), tracking_uri=uri, registry_uri=uri)
    flavor = (yaml.safe_load(Path(mlmodel).read_text()) or {}).get("flavors", {}).get("python_function", {})
    entry = (flavor.get("artifacts") or {}).get(ARTIFACT_KEY)
    if not isinstance(entry, dict) or not entry.get("path"):
        raise ModelRefError(f"models:/{name}/{version}: not a colonpipe pyfunc (no {ARTIFACT_KEY!r} artifact)")
    return str(entry["path"])


def download_registered(ref: str) -> Path:
    """The local folder of the registered model ``ref`` (downloaded on first use)."""
    name, version = _version(ref)
    store = hashlib.sha256(tracking_uri().encode()).hexdigest()[:12]
    target = cache_root() / "registry" / store / name / f"v{version}"
    if target.is_dir():
        logger.info("%s -> version %s, cached at %s", ref, version, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=target.parent))
    try:
        path = _artifact_path(name, version, scratch / "meta")
        uri = tracking_uri()
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}/{path}", dst_path=str(scratch / "model"),
            tracking_uri=uri, registry_uri=uri))
        try:
            os.replace(local, target)
        except OSError:
            if not target.is_dir():  # another process finished the same download first: use it
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("%s -> version %s, downloaded to %s", ref, version, target)
    return target


def resolve_model(ref: str | Path) -> Path:
    """A local model folder for a path or a ``models:/`` URI (module docstring)."""
    text = str(ref)
    if text.startswith("models:/"):
        return download_registered(text)
    path = Path(text)
    if not path.is_dir():
        raise ModelRefError(f"{path}: no such model folder (give a folder or a models:/<name>@<alias> URI)")
    return path
