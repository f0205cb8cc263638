"""Merge shard journals into the reference prediction file, in input order, atomically.

Output: the input records (a JSON list), each with a third turn
``{"from": "prediction", "value": "..."}`` appended to ``conversations`` - the format the
reference ColonGPT inference writes. A record whose inference failed keeps its place with
prediction ``""`` and an extra top-level ``"error"`` key. A position with no journal entry
at all is a bug upstream of the merge and raises ``MergeError`` (never dropped silently).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colonpipe import atomic
from colonpipe.infer.journal import read_journals

logger = logging.getLogger(__name__)


class MergeError(RuntimeError):
    """Journals do not cover every input position."""


@dataclass(frozen=True)
class MergeSummary:
    path: Path
    records: int
    errors: int


def prediction_record(record: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """One output record: ``record`` plus its prediction turn (and ``error`` when it failed)."""
    value = entry.get("prediction", "") if "error" not in entry else ""
    turn = {"from": "prediction", "value": value}
    if isinstance(record, dict) and isinstance(record.get("conversations"), list):
        out = copy.deepcopy(record)
        out["conversations"].append(turn)
    else:  # unreadable record: keep its position, say why
        out = {"record": record, "conversations": [turn]}
    if "error" in entry:
        out["error"] = entry["error"]
    return out


def merge_predictions(
    records: list[Any], journal_dir: str | Path, out_path: str | Path
) -> MergeSummary:
    """Write ``out_path`` from ``records`` and the journals in ``journal_dir``.

    Raises ``MergeError`` naming the missing positions if any record has no entry.
    """
    done = read_journals(journal_dir)
    missing = [i for i in range(len(records)) if i not in done]
    if missing:
        head = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise MergeError(
            f"{journal_dir}: {len(missing)} of {len(records)} positions have no prediction "
            f"(first: {head}); rerun inference to finish them"
        )
    out = [prediction_record(rec, done[i]) for i, rec in enumerate(records)]
    errors = sum("error" in done[i] for i in range(len(records)))
    atomic.write_json(out_path, out)
    if errors:
        logger.warning("%s: %d of %d records failed (prediction \"\", see their \"error\")",
                       out_path, errors, len(records))
    logger.info("wrote %s (%d records)", out_path, len(records))
    return MergeSummary(Path(out_path), len(records), errors)
