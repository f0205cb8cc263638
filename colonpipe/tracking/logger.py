"""The one tracking interface (convention 8): a small protocol and its MLflow implementation.

Stages and flows log through ``RunLogger``; ``MlflowLogger`` writes to one MLflow run by id
(no reliance on MLflow's global "active run"), so it is safe to hold several at once.
Params are flat dotted keys (``finetune.lora.r``; see ``colonpipe.params.flatten``).
``numeric_leaves`` turns a nested report into dotted metric names the same way, and
``log_files`` logs output files as artifacts keeping their folders.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

_BAD_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")
_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_BATCH = 100  # MLflow's limit on params per batch


@runtime_checkable
class RunLogger(Protocol):
    """What a stage may log. ``run_id`` names the run it writes to."""

    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


def clean_key(key: str) -> str:
    """Map a key onto MLflow's allowed characters (``[A-Za-z0-9_-. /]``)."""
    return _BAD_KEY_CHARS.sub("_", str(key))


class MlflowLogger:
    """``RunLogger`` writing to MLflow run ``run_id`` through ``client``."""

    def __init__(self, client: "MlflowClient", run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log flat params; values are stringified (JSON for lists/dicts) and capped at 6000 chars."""
        from mlflow.entities import Param

        items = [Param(clean_key(k), _param_value(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        """Log numeric metrics at ``step`` (default 0). Non-numeric values raise ``TypeError``."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for key, value in sorted(metrics.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"metric {key!r}: expected a number, got {value!r}")
            batch.append(Metric(clean_key(key), float(value), now, step or 0))
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None:
        """Copy a file (into ``artifact_path``) or a whole directory (as ``artifact_path``,
        default its own name) into the run's artifacts."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"{path}: cannot log as artifact, no such file or directory")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(clean_key(k), _tag_value(v)) for k, v in sorted(tags.items())]
        self.client.log_batch(self.run_id, tags=batch)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        """Write ``obj`` as indented JSON to artifact ``artifact_file`` (e.g. ``lineage/x.json``)."""
        name = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name.name
            local.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
            parent = str(name.parent) if str(name.parent) != "." else None
            self.client.log_artifact(self.run_id, str(local), parent)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > _MAX_PARAM_LEN:
        logger.warning("param value truncated to %d chars: %s...", _MAX_PARAM_LEN, text[:60])
        text = text[: _MAX_PARAM_LEN - 3] + "..."
    return text


def _tag_value(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 8000 else text[:7997] + "..."


def log_files(log: RunLogger, paths: Iterable[str | Path], artifact_path: Optional[str] = None, *,
              root: Optional[str | Path] = None) -> int:
    """Log every file in ``paths`` (missing ones raise); returns how many were logged.

    With ``root``, a file's folders below ``root`` are kept under ``artifact_path``.
    """
    count = 0
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: cannot log as artifact, no such file")
        dest = artifact_path
        if root is not None:
            sub = path.resolve().parent.relative_to(Path(root).resolve()).as_posix()
            parts = [p for p in (artifact_path, sub) if p and p != "."]
            dest = "/".join(parts) or None
        log.log_artifact(path, dest)
        count += 1
    return count


def numeric_leaves(obj: Any, prefix: str = "", *, skip: Sequence[str] = ()) -> dict[str, float]:
    """``{"a.b": 1.0}`` for every int/float leaf of nested mappings (bools excluded); top-level
    keys in ``skip`` (at any depth) are left out: breakdowns that belong in an artifact."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key not in skip:
                out.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and prefix:
        out[prefix] = float(obj)
    return out
