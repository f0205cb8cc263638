"""The servable model: an MLflow pyfunc that answers (image, question[, task]) rows with ColonGPT.

Input: a pandas DataFrame (or records / a dict of columns) with columns
- ``image``: the image as base64 bytes (a ``data:image/...;base64,`` prefix is allowed) or a
  path to an image file readable by the process that serves the model;
- ``question``: the human turn; ``"<image>\\n"`` is prepended when it holds no ``<image>``
  (the ColonINST turn format);
- ``task`` (optional): ``cls`` / ``reg`` / ``rec`` / ``cap`` picks ``max_new_tokens`` from the
  ``ServeConfig`` saved with the model (default 40, ``cap`` 512); empty or missing -> default.

Output: one answer string per row, in row order. A bad row (unreadable image, unknown task)
fails the whole request with an ``MlflowException`` naming the row (HTTP 400 when served).

The model is logged "from code" (``pyfunc_entry.py`` is the model's code file, so no pickled
Python object is stored or loaded) with one artifact, ``model_dir``: a self-contained
``save_pretrained`` ColonGPT folder. A training output (``final/``, which names its base model
by path) is merged into such a folder first. ``load_context`` loads it through
``colonpipe.infer.load.load_for_inference`` on CPU by default with ``HF_HUB_OFFLINE=1``: no
network. ``colonpipe`` must be importable where the model is served (installed in the venv).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import mlflow
import pandas as pd

from colonpipe.model.tokenizer import IMAGE_TOKEN
from colonpipe.params import TASKS

logger = logging.getLogger(__name__)

ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")
ARTIFACT_KEY = "model_dir"
# What the served model needs at runtime; pinned from this venv so nothing is resolved.
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "peft", "accelerate",
                "pillow", "numpy", "pandas", "pyyaml")


@dataclass(frozen=True)
class ServeConfig:
    """Decoding and runtime settings saved with the model (MLflow ``model_config``).

    Override at load time: ``mlflow.pyfunc.load_model(uri, model_config={"device": "cuda"})``.
    """

    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"cls": 40, "reg": 40, "rec": 40, "cap": 512})
    default_max_new_tokens: int = 40  # rows without a task
    batch_size: int = 8  # rows per generate call
    device: str = "cpu"
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    threads: int = 0  # torch threads; 0 = torch's default

    @classmethod
    def from_mapping(cls, data: Optional[Mapping[str, Any]]) -> "ServeConfig":
        """Build from a ``model_config`` mapping; unknown keys raise ``ValueError``."""
        data = dict(data or {})
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown serve config keys: {sorted(unknown)}")
        if "max_new_tokens" in data:
            data["max_new_tokens"] = {**cls().max_new_tokens, **data["max_new_tokens"]}
        return cls(**data)

    def budget(self, task: Any, *, row: int) -> int:
        """``max_new_tokens`` for a row's ``task`` (None / NaN / "" -> the default)."""
        if task is None or (isinstance(task, float) and task != task) or str(task).strip() == "":
            return self.default_max_new_tokens
        name = str(task).strip().lower()
        if name not in self.max_new_tokens:
            raise _bad_input(f"row {row}: unknown task {task!r} (known: {', '.join(TASKS)})")
        return int(self.max_new_tokens[name])


def _bad_input(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except OSError:  # e.g. a base64 string with a "component" longer than NAME_MAX
        return False


def decode_image(value: Any, *, row: int):
    """A row's ``image`` cell (base64 bytes/str, data URI, or file path) -> RGB ``PIL.Image``."""
    from colonpipe.data.images import ImageError, load_rgb

    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str) or not value.strip():
        raise _bad_input(f"row {row}: 'image' must be base64 image bytes or a file path, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if _is_file(text):
        source: Any = text
        label = text
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _bad_input(f"row {row}: 'image' is neither an existing file nor valid base64 "
                             f"({text[:40]!r}...)") from None
        source, label = io.BytesIO(raw), f"base64 image ({len(raw)} bytes)"
    try:
        return load_rgb(source)
    except ImageError as exc:
        raise _bad_input(f"row {row}: {str(exc).replace(str(source), label)}") from None


def human_turn(question: Any, *, row: int) -> str:
    """The ColonINST human turn for ``question``: exactly one ``<image>``, first when added."""
    if not isinstance(question, str) or not question.strip():
        raise _bad_input(f"row {row}: 'question' must be a non-empty string")
    count = question.count(IMAGE_TOKEN)
    if count > 1:
        raise _bad_input(f"row {row}: 'question' holds {count} {IMAGE_TOKEN} placeholders; one image per row")
    return question if count == 1 else f"{IMAGE_TOKEN}\n{question}"


def as_frame(model_input: Any) -> pd.DataFrame:
    """Accept a DataFrame, a list of row dicts or a dict of columns; check the columns."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    missing = {"image", "question"} - set(frame.columns)
    if missing:
        raise _bad_input(f"input lacks column(s) {sorted(missing)}; expected image, question[, task]")
    return frame.reset_index(drop=True)


class ColonGPTPyfunc(mlflow.pyfunc.PythonModel):
    """ColonGPT behind MLflow's pyfunc interface (see the module docstring for the contract)."""

    def load_context(self, context) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # a served model never reaches for a hub
        from colonpipe.infer.load import load_for_inference

        self.config = ServeConfig.from_mapping(context.model_config)
        self.model, self.processor = load_for_inference(
            context.artifacts[ARTIFACT_KEY], device=self.config.device, dtype=self.config.dtype,
            attn_implementation=self.config.attn_implementation, threads=self.config.threads)

    def predict(self, context, model_input: pd.DataFrame,
                params: Optional[dict[str, Any]] = None) -> list[str]:
        """Rows -> answers (batched greedy generation, one group per ``max_new_tokens``)."""
        from colonpipe.infer.generate import generate_answers

        frame = as_frame(model_input)
        tasks = frame["task"] if "task" in frame.columns else [None] * len(frame)
        budgets = [self.config.budget(t, row=i) for i, t in enumerate(tasks)]
        questions = [human_turn(q, row=i) for i, q in enumerate(frame["question"])]
        images = [decode_image(v, row=i) for i, v in enumerate(frame["image"])]
        answers = [""] * len(frame)
        for budget in sorted(set(budgets)):
            rows = [i for i, b in enumerate(budgets) if b == budget]
            got = generate_answers(self.model, self.processor, [questions[i] for i in rows],
                                   [images[i] for i in rows], batch_size=self.config.batch_size,
                                   max_new_tokens=budget)
            for i, answer in zip(rows, got):
                answers[i] = answer
        return answers
