"""``ServeConfig``: the served model's decoding settings, what a request may make it read, its limits.

It is saved with the model (MLflow ``model_config``). Override keys when loading
(``mlflow.pyfunc.load_model(uri, model_config={"device": "cuda"})``) or when serving, through
MLflow's ``MLFLOW_PYFUNC_INFERENCE_CONFIG`` environment variable (JSON), e.g.::

    MLFLOW_PYFUNC_INFERENCE_CONFIG='{"image_roots": ["/data/colonoscopy"]}' \\
        mlflow models serve -m models:/colongpt@champion --env-manager local -p 5001

MLflow only overrides keys the logged model has, so a model logged before a key existed
ignores it (with a warning in the server log).

- Images arrive as base64 (the default, ``image_roots`` empty). A row may name an image file
  by absolute path only when the path, resolved (symlinks, ``..``), lies under one of the
  ``image_roots`` folders; a root of ``/`` is refused.
- Limits, each checked before anything is decoded; a request over one gets HTTP 400 naming
  the row and the key: ``max_rows`` per request, ``max_image_bytes`` per encoded image (the
  file's bytes, before decoding), ``max_pixels`` per image (width x height from its header;
  PIL's ``Image.MAX_IMAGE_PIXELS`` caps it too) and ``max_question_chars``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from colonpipe.params import TASKS

_POSITIVE = ("default_max_new_tokens", "batch_size", "max_rows", "max_image_bytes", "max_pixels",
             "max_question_chars")


class BadRequest(MlflowException):
    """A bad request: HTTP 400 whose message is exactly ours.

    MLflow's scoring server rewrites the message of an ``MlflowException`` from ``predict`` to
    ``"Failed to predict data '<the request's DataFrame>'. Error: ..."``, which would echo the
    submitted paths and image data back to the client; the first message set is kept.
    """

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


def bad_input(message: str) -> BadRequest:
    """The exception for a request the model refuses (HTTP 400 with ``message`` when served)."""
    return BadRequest(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class ServeConfig:
    """Decoding, runtime, input and limit settings of the served model (module docstring)."""

    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"cls": 40, "reg": 40, "rec": 40, "cap": 512})
    default_max_new_tokens: int = 40  # rows without a task
    batch_size: int = 8  # rows per generate call
    device: str = "cpu"
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    threads: int = 0  # torch threads; 0 = torch's default
    image_roots: tuple[str, ...] = ()  # folders a row may name image files in; none: base64 only
    max_rows: int = 32  # rows per request
    max_image_bytes: int = 16 * 2**20  # bytes of one encoded image file (PNG/JPEG/...)
    max_pixels: int = 25_000_000  # width x height per image (a 4K frame is 8.3 M)
    max_question_chars: int = 2000  # ColonINST questions are under 300 characters

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"serve config: {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"serve config: threads must be an integer >= 0, got {self.threads!r}")
        object.__setattr__(self, "image_roots", _roots(self.image_roots))

    @classmethod
    def from_mapping(cls, data: Optional[Mapping[str, Any]]) -> "ServeConfig":
        """Build from a ``model_config`` mapping; unknown keys or bad values raise ``ValueError``."""
        data = dict(data or {})
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown serve config keys: {sorted(unknown)}")
        if "max_new_tokens" in data:
            data["max_new_tokens"] = {**cls().max_new_tokens, **data["max_new_tokens"]}
        return cls(**data)

    def to_mapping(self) -> dict[str, Any]:
        """Plain JSON/YAML types (lists, not tuples): what ``log_model(model_config=...)`` stores."""
        data = dataclasses.asdict(self)
        data["image_roots"] = list(self.image_roots)
        return data

    def budget(self, task: Any, *, row: int) -> int:
        """``max_new_tokens`` for a row's ``task`` (None / NaN / "" -> the default)."""
        if task is None or (isinstance(task, float) and task != task) or str(task).strip() == "":
            return self.default_max_new_tokens
        name = str(task).strip().lower()
        if name not in self.max_new_tokens:
            shown = repr(task) if len(str(task)) <= 40 else f"{str(task)[:40]!r}..."
            raise bad_input(f"row {row}: unknown task {shown} (known: {', '.join(TASKS)})")
        return int(self.max_new_tokens[name])


def _roots(value: Any) -> tuple[str, ...]:
    """``image_roots`` as a tuple of normalised absolute paths; ``ValueError`` otherwise."""
    items = [value] if isinstance(value, str) else list(value or ())
    roots = []
    for item in items:
        if not isinstance(item, str) or not os.path.isabs(item):
            raise ValueError(f"serve config: image_roots must be absolute folder paths, got {item!r}")
        root = os.path.normpath(item)
        if root == os.path.sep or os.path.realpath(root) == os.path.sep:
            raise ValueError("serve config: an image root of '/' would open the whole file system to requests")
        roots.append(root)
    return tuple(roots)
