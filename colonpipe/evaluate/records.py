"""Reading prediction files (ours or the original ColonGPT code's) into scorable rows.

A prediction file is a JSON list of instruction records, each with a third turn
``{"from": "prediction", "value": ...}`` appended to ``conversations``; the answer is the
``"gpt"`` turn. Record-level problems are skipped-and-reported, never fatal:

- a record whose prediction turn is missing or not a string is scored as wrong (IoU 0,
  empty caption) and counted in ``n_missing_prediction``;
- a record our inference marked with a top-level ``"error"`` (prediction ``""``) is scored
  as wrong and counted in ``n_inference_error``;
- a record without a usable ``gpt`` answer (missing, not a string, record not an object)
  cannot be scored: it is left out of every denominator and counted in ``n_invalid``;
- a record repeating an earlier one (same id, question and answer) is scored again, as the
  reference does, and counted in ``n_duplicate_record``.

File-level problems raise :class:`~colonpipe.coloninst.ColonINSTError` naming the file:
missing, unreadable or non-list JSON (``coloninst.read_records``), and, against a source
instruction file, a different record count or ids the source does not hold as often
(:class:`PredictionFileError`, a ``ColonINSTError``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from colonpipe.coloninst import GPT, HUMAN, PREDICTION, ColonINSTError, dataset_of, read_records, record_id, turn

logger = logging.getLogger(__name__)

class PredictionFileError(ColonINSTError):
    """A prediction file that does not fit its source instruction file; the message names both."""


@dataclass(frozen=True)
class Row:
    """One scorable record: position in the file, ids, question, answer, prediction."""

    index: int
    id: str
    dataset: str
    question: str
    answer: str
    prediction: str | None  # None: missing/malformed prediction turn
    error: str | None = None  # inference error our merge recorded (its prediction is "")


def to_rows(records: list, *, source: str = "<records>") -> tuple[list[Row], int]:
    """Scorable rows and the count of records without a usable answer (logged, skipped)."""
    rows, invalid = [], 0
    for i, rec in enumerate(records):
        answer = turn(rec, GPT, last=True)
        if answer is None:
            invalid += 1
            logger.warning("%s: record %d has no 'gpt' answer turn; skipped", source, i)
            continue
        rid = record_id(rec) or ""
        question = turn(rec, HUMAN, last=True) or ""
        error = str(rec["error"]) if rec.get("error") is not None else None
        rows.append(Row(i, rid, dataset_of(rid), question, answer, turn(rec, PREDICTION, last=True), error))
    return rows, invalid


def duplicate_count(rows: list[Row]) -> int:
    """Rows repeating an earlier row's (id, question, answer): a resumed run written twice?

    Rows without an id are never duplicates of each other.
    """
    seen = Counter((r.id, r.question, r.answer) for r in rows if r.id)
    return sum(n - 1 for n in seen.values())


def _ids(records: list) -> Counter:
    return Counter(r["id"] for r in records if isinstance(r, dict) and isinstance(r.get("id"), str))


def check_source(pred_path: Path, records: list, source_path: Path) -> None:
    """Raise ``PredictionFileError`` unless ``records`` can be predictions for ``source_path``.

    Same record count, and no id more often than the source holds it (ids repeat within a
    file legitimately: one REC record per category of an image). Records without an id
    are left to :func:`to_rows`.
    """
    source = read_records(source_path)
    if len(source) != len(records):
        raise PredictionFileError(f"{pred_path}: {len(records)} records but its source {source_path} has {len(source)}")
    extra = _ids(records) - _ids(source)
    if extra:
        first = min(extra)
        raise PredictionFileError(
            f"{pred_path}: {sum(extra.values())} record(s) with an id its source {source_path} does not hold"
            f" (as often), e.g. {first!r}: predictions for another file?"
        )
