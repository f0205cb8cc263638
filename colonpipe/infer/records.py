"""Read an instruction file and pull out what inference needs from each record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RecordError(ValueError):
    """A record inference cannot use; the message says what is wrong with it."""


def load_records(path: str | Path, *, limit: int | None = None) -> list[Any]:
    """The JSON list in ``path`` (first ``limit`` records); a clear error naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: instruction file not found") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data if limit is None else data[:limit]


def parse_record(record: Any) -> tuple[str, str]:
    """``(image id, human question)`` of one record; ``RecordError`` if it is malformed.

    The question is the first human turn's value as written (it starts with ``<image>\\n``).
    """
    if not isinstance(record, dict):
        raise RecordError(f"record is a {type(record).__name__}, not an object")
    image_id = record.get("id")
    if not isinstance(image_id, str) or not image_id:
        raise RecordError("record has no string 'id'")
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise RecordError(f"{image_id}: 'conversations' is not a list")
    for turn in turns:
        if isinstance(turn, dict) and turn.get("from") == "human" and isinstance(turn.get("value"), str):
            return image_id, turn["value"]
    raise RecordError(f"{image_id}: no human turn with a string value")
