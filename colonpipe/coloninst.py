"""The ColonINST contract, in one dependency-free place (standard library only).

Everything that says what ColonINST data *is* lives here, and every reader and writer in
colonpipe uses it:

- the tasks, the splits and the stage-2 task set;
- the special tokens and the conversation's fixed text (``<image>``, ``<|endoftext|>``,
  the human-turn prefix and the system prompt);
- box text ``{<x1><y1><x2><y2>}`` (integers, absolute pixels, inclusive), strict both ways;
- the file names ``ColonINST-{split}-{task}.json`` and ``{split}_pred_{task}.json``;
- one reader of instruction/prediction JSON lists and one turn accessor, both raising
  :class:`ColonINSTError`, whose message names the file (and the record).

Record shape: ``{"id": "<Dataset>/<path>", "image": <stem>, "conversations": [{"from":
"human", "value": "<image>\\n<question>"}, {"from": "gpt", "value": <answer>}]}``; a
prediction file appends ``{"from": "prediction", "value": ...}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TASKS = ("cls", "reg", "rec", "cap")
STAGE2_TASKS = ("cls", "reg", "rec")  # the combined "3tasks" training file of stage 2
COMBINED_TASK = "3tasks"
SPLITS = ("train", "val", "test")
SPLIT_RATIOS = (0.6, 0.1, 0.3)  # the seeded split of a source without an official one

IMAGE_TOKEN = "<image>"
EOS_TOKEN = "<|endoftext|>"
HUMAN_PREFIX = IMAGE_TOKEN + "\n"
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
HUMAN, GPT, PREDICTION = "human", "gpt", "prediction"
UNKNOWN_DATASET = "(unknown)"

_BOX_RE = re.compile(r"\{<(\d+)><(\d+)><(\d+)><(\d+)>\}")
_INSTRUCTION_RE = re.compile(r"ColonINST-(train|val|test)-(cls|reg|rec|cap|3tasks)\.json")
_PREDICTION_RE = re.compile(r"(train|val|test)_pred_(cls|reg|rec|cap)\.json")


class ColonINSTError(ValueError):
    """A ColonINST file, record or box text colonpipe cannot use; the message says which and why."""


class BoxTextError(ColonINSTError):
    """Box text that is not ``{<x1><y1><x2><y2>}`` with x1<=x2 and y1<=y2."""


# ----------------------------------------------------------------------------- splits
def check_ratios(ratios: Sequence[float]) -> list[str]:
    """Problems with a train/val/test ratio triple (empty list when fine)."""
    if len(ratios) != len(SPLITS):
        return [f"split_ratios needs {len(SPLITS)} values (train/val/test), got {len(ratios)}"]
    problems = []
    if any(r < 0 for r in ratios):
        problems.append(f"split_ratios must be non-negative, got {list(ratios)}")
    if not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        problems.append(f"split_ratios must sum to 1, got {sum(ratios):.6g}")
    return problems


# ----------------------------------------------------------------------------- box text
def format_box(box: Sequence[int]) -> str:
    """``[x1, y1, x2, y2]`` (non-negative ints, x1<=x2, y1<=y2) -> ``{<x1><y1><x2><y2>}``."""
    if len(box) != 4:
        raise BoxTextError(f"box needs 4 numbers, got {list(box)!r}")
    x1, y1, x2, y2 = (int(v) for v in box)
    if min(x1, y1) < 0 or x2 < x1 or y2 < y1:
        raise BoxTextError(f"box {list(box)!r} is negative or inverted")
    return f"{{<{x1}><{y1}><{x2}><{y2}>}}"


def parse_box(text: str) -> tuple[int, int, int, int]:
    """Inverse of :func:`format_box`; strict (no spaces, not inverted), ``BoxTextError`` naming the text.

    This is the *data* rule. Scoring a model's REC answer uses the reference evaluator's lenient
    number extraction instead (``colonpipe.evaluate.metrics.box_numbers``).
    """
    m = _BOX_RE.fullmatch(text)
    if m is None:
        raise BoxTextError(f"malformed box text {text!r} (expected {{<x1><y1><x2><y2>}})")
    x1, y1, x2, y2 = (int(g) for g in m.groups())
    if x2 < x1 or y2 < y1:
        raise BoxTextError(f"inverted box text {text!r}")
    return x1, y1, x2, y2


# ----------------------------------------------------------------------------- file names
def instruction_file(split: str, task: str) -> str:
    """``ColonINST-{split}-{task}.json`` (``task`` may be ``3tasks``)."""
    if split not in SPLITS or task not in (*TASKS, COMBINED_TASK):
        raise ColonINSTError(f"no ColonINST file for split {split!r} and task {task!r}")
    return f"ColonINST-{split}-{task}.json"


def instruction_path(json_dir: str | Path, split: str, task: str) -> Path:
    """``{json_dir}/{split}/ColonINST-{split}-{task}.json``: the release's ``Json-file`` layout."""
    return Path(json_dir) / split / instruction_file(split, task)


def prediction_file(split: str, task: str) -> str:
    """``{split}_pred_{task}.json``, the reference evaluator's prediction file name."""
    if split not in SPLITS or task not in TASKS:
        raise ColonINSTError(f"no prediction file for split {split!r} and task {task!r}")
    return f"{split}_pred_{task}.json"


def parse_instruction_file(name: str) -> tuple[str, str] | None:
    """``(split, task)`` of a ``ColonINST-{split}-{task}.json`` name, or None."""
    m = _INSTRUCTION_RE.fullmatch(name)
    return (m.group(1), m.group(2)) if m else None


def parse_prediction_file(name: str) -> tuple[str, str] | None:
    """``(split, task)`` of a ``{split}_pred_{task}.json`` name, or None."""
    m = _PREDICTION_RE.fullmatch(name)
    return (m.group(1), m.group(2)) if m else None


# ----------------------------------------------------------------------------- records
def read_records(path: str | Path, *, limit: int | None = None) -> list[Any]:
    """The JSON list of records in ``path`` (its first ``limit``), entries unchecked.

    ``ColonINSTError`` naming the file when it is missing, unreadable, not JSON (numbers past
    Python's int-string limit and nesting too deep included) or not a list.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ColonINSTError(f"{path}: file not found") from None
    except RecursionError:
        raise ColonINSTError(f"{path}: cannot read JSON: nested too deeply") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, int too long
        raise ColonINSTError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(data, list):
        raise ColonINSTError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data if limit is None else data[:limit]


def record_id(record: Any) -> str | None:
    """The record's ``id`` when it is a non-empty string, else None."""
    rid = record.get("id") if isinstance(record, dict) else None
    return rid if isinstance(rid, str) and rid else None


def turn(record: Any, role: str, *, last: bool = False) -> str | None:
    """Value of the first (``last``: the last) turn from ``role`` when it is a string, else None."""
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list):
        return None
    found = [t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == role]
    if not found:
        return None
    value = found[-1] if last else found[0]
    return value if isinstance(value, str) else None


def dialogue(record: Any) -> tuple[str, str, str]:
    """``(id, question, answer)`` of a training record, strictly: a string ``id``, the first turn a
    human turn holding exactly one ``<image>``, the second a gpt turn, both string values.

    ``ColonINSTError`` says what is wrong (the caller adds the file and position).
    """
    rid = record_id(record)
    if rid is None:
        raise ColonINSTError("not an object with a string 'id'")
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise ColonINSTError(f"{rid}: 'conversations' must hold a human and a gpt turn")
    human, gpt = turns[0], turns[1]
    if not (isinstance(human, dict) and human.get("from") == HUMAN and isinstance(human.get("value"), str)):
        raise ColonINSTError(f"{rid}: first turn is not a human turn with a string value")
    if not (isinstance(gpt, dict) and gpt.get("from") == GPT and isinstance(gpt.get("value"), str)):
        raise ColonINSTError(f"{rid}: second turn is not a gpt turn with a string value")
    if human["value"].count(IMAGE_TOKEN) != 1:
        raise ColonINSTError(f"{rid}: human turn must hold exactly one {IMAGE_TOKEN}")
    return rid, human["value"], gpt["value"]


def question_text(question: str) -> str:
    """A human turn's question without its leading ``<image>\\n``."""
    return question[len(HUMAN_PREFIX):] if question.startswith(HUMAN_PREFIX) else question


def dataset_of(rid: str | None) -> str:
    """Source dataset of a record: the first path component of its id."""
    return rid.split("/", 1)[0] if rid else UNKNOWN_DATASET


def image_and_question(record: Any) -> tuple[str, str]:
    """``(id, question)`` of a record to answer: its string ``id`` and its first human turn's value
    as written (starting with ``<image>\\n``). ``ColonINSTError`` says what is missing."""
    rid = record_id(record) if isinstance(record, dict) else None
    if not isinstance(record, dict):
        raise ColonINSTError(f"record is a {type(record).__name__}, not an object")
    if rid is None:
        raise ColonINSTError("record has no string 'id'")
    if not isinstance(record.get("conversations"), list):
        raise ColonINSTError(f"{rid}: 'conversations' is not a list")
    question = turn(record, HUMAN)
    if question is None:
        raise ColonINSTError(f"{rid}: no human turn with a string value")
    return rid, question
