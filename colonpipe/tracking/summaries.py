"""What the stages log besides params: files as artifacts, and their summaries as metrics.

Contract:
- ``log_files(log, paths, artifact_path, root=...)``: each file into ``artifact_path``, keeping
  its folders below ``root`` (so ``plots/test/x.png`` and ``plots/val/x.png`` stay apart);
- ``numeric_leaves(obj, prefix)``: the numbers of a nested mapping as dotted metric names;
- ``saved_parameter_count(folder)``: parameters in a saved model's safetensors (headers only);
- ``infer_metrics(task, summaries, ...)``: per split records, errors, predicted now, samples/s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from colonpipe.infer.merge_shards import MergeSummary
    from colonpipe.tracking.logger import RunLogger

logger = logging.getLogger(__name__)


def log_files(log: "RunLogger", paths: Iterable[str | Path], artifact_path: Optional[str] = None, *,
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


def saved_parameter_count(folder: str | Path) -> int:
    """Parameters stored in ``folder``'s ``*.safetensors`` files, read from the headers only."""
    import math

    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to count")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            total += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())
    return total


def _shard_rate(journal_dir: Path, since: float) -> tuple[int, float]:
    """(records generated, samples/s) from the shard results written after ``since``."""
    done, seconds = 0, 0.0
    for path in sorted(Path(journal_dir).glob("shard-*.result.json")):
        if path.stat().st_mtime < since:
            continue  # left by an earlier run (this one only merged)
        result = json.loads(path.read_text())
        done += int(result.get("done", 0))
        seconds = max(seconds, float(result.get("seconds", 0.0)))  # shards run in parallel
    return done, (done / seconds if seconds > 0 else 0.0)


def infer_metrics(task: str, summaries: Sequence["MergeSummary"], *, splits: Sequence[str],
                  journal_dirs: Sequence[Path], since: float) -> dict[str, float]:
    """``{split}.{task}.records|errors|predicted[|samples_per_s]`` for each split's summary.

    ``predicted`` counts records generated in this run (resumed ones excluded);
    ``samples_per_s`` is their generation throughput (absent when nothing was generated).
    """
    metrics: dict[str, float] = {}
    for split, summary, journal in zip(splits, summaries, journal_dirs, strict=True):
        key = f"{split}.{task}"
        done, rate = _shard_rate(journal, since)
        metrics.update({f"{key}.records": summary.records, f"{key}.errors": summary.errors,
                        f"{key}.predicted": done})
        if done:
            metrics[f"{key}.samples_per_s"] = rate
    return metrics
