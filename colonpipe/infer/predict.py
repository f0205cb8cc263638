"""Answer one question about each of many image files, batched; a bad image never stops the rest.

The library half of ``colonpipe predict`` (the command, which also resolves ``models:/`` URIs,
is :mod:`colonpipe.register.model_commands`):

- :func:`task_question` turns ``--task`` (+ ``--box`` / ``--category``) into the first
  ColonINST template of that task; :func:`human_turn` puts ``<image>\\n`` in front as ColonINST
  turns have it; :func:`max_new_tokens_for` is the task's decoding budget (``infer`` defaults:
  cls/reg/rec 40, cap 512; 40 without a task).
- :func:`read_image` refuses a missing, unreadable or oversized file (``max_pixels`` is checked
  from the header, before any pixel is decoded, so a decompression bomb costs nothing).
- :func:`predict_images` reads ``batch_size`` images at a time, answers the readable ones with
  :func:`colonpipe.infer.generate.generate_answers` and yields one :class:`Prediction` per path,
  in input order (memory stays bounded by one batch of images).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from colonpipe.data.images import ImageError, load_rgb
from colonpipe.coloninst import HUMAN_PREFIX, IMAGE_TOKEN, format_box
from colonpipe.data.templates import render_question
from colonpipe.infer.generate import generate_answers
from colonpipe.params import TASKS, InferParams

DEFAULT_MAX_NEW_TOKENS = 40  # a question without a task: the short-answer budget
MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any endoscope frame, far below a bomb's billions


@dataclass(frozen=True)
class Prediction:
    """One image's outcome: ``answer`` or ``error`` (the other is None)."""

    image: str
    question: str
    answer: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def task_question(task: str, *, box: Sequence[int] | None = None, category: str | None = None) -> str:
    """The first ColonINST template of ``task``; REG needs ``box`` (x1, y1, x2, y2), REC ``category``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if task == "reg" and box is None:
        raise ValueError("task reg asks for the category of a box: give --box X1,Y1,X2,Y2 (or --question)")
    if task == "rec" and not category:
        raise ValueError("task rec asks where a category is: give --category NAME (or --question)")
    return render_question(task, 0, box=format_box(box) if box is not None else None, category=category)


def human_turn(question: str) -> str:
    """``question`` as a ColonINST human turn: exactly one ``<image>``, put first when absent."""
    if not question.strip():
        raise ValueError("the question is empty")
    count = question.count(IMAGE_TOKEN)
    if count > 1:
        raise ValueError(f"the question holds {count} {IMAGE_TOKEN} placeholders; one image per question")
    return question if count == 1 else HUMAN_PREFIX + question


def max_new_tokens_for(task: str | None) -> int:
    """The task's generation budget from the ``infer`` defaults (40 without a task)."""
    return InferParams().max_new_tokens[task] if task else DEFAULT_MAX_NEW_TOKENS


def read_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """``path`` as RGB; ``ImageError`` naming the file if it is missing, unreadable or too large."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # header only: the size is known before decoding
                width, height = im.size
            if width * height > max_pixels:
                raise ImageError(f"{path}: refused, {width}x{height} = {width * height} pixels exceeds "
                                 f"the limit of {max_pixels}")
            return load_rgb(path)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused, too many pixels for an image ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None


def predict_images(
    model: Any, processor: Any, paths: Sequence[str | Path], question: str, *,
    max_new_tokens: int, batch_size: int = 8, max_pixels: int = MAX_PIXELS,
) -> Iterator[Prediction]:
    """One :class:`Prediction` per path, in order; unreadable images carry ``error``, the rest answers.

    ``question`` is the human turn (one ``<image>``); answers are greedy, as ``colonpipe
    infer`` decodes, and do not depend on ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        chunk = [str(p) for p in paths[start:start + batch_size]]
        images: dict[int, Image.Image] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(chunk):
            try:
                images[i] = read_image(path, max_pixels=max_pixels)
            except ImageError as exc:
                errors[i] = str(exc)
        answers = dict(zip(images, generate_answers(
            model, processor, [question] * len(images), list(images.values()),
            batch_size=batch_size, max_new_tokens=max_new_tokens))) if images else {}
        for i, path in enumerate(chunk):
            yield Prediction(path, question, answer=answers.get(i), error=errors.get(i))
