"""Log ColonGPT as the servable MLflow pyfunc (contract: ``colonpipe.register.pyfunc``).

``log_pyfunc_model`` makes the model folder self-contained first: a training output
(``final/`` with ``train_config.json``) refers to its base model by path, so it is merged
(adapter and projector folded into the base weights) into a temporary ``save_pretrained``
folder, in bfloat16 by default: the registry stores the weights once, at half the fp32 size (the
served model computes in its ``ServeConfig.dtype``, fp32 on CPU by default). A saved ColonGPT
(``config.json``, e.g. a ``colonpipe merge`` output) is logged as it is.

The logged model serves anywhere MLflow builds an environment (``--env-manager virtualenv/uv``,
``mlflow models build-docker``): it carries

- the colonpipe wheel, built at log time from the running source tree (``colonpipe.register.wheel``),
  as the artifact ``colonpipe_wheel/<file>.whl``, named in ``requirements.txt`` by that relative
  path (MLflow installs requirements from inside the model directory);
- pip requirements pinned from this environment (``name==version``, local tags dropped; torch
  as ``torch==2.13.0``, so pip takes the CPU wheel where one is configured);
- the ``ServeConfig`` (every key, so each can be overridden when serving; by default no
  ``image_roots``: images only as base64), a signature and a small input example (MLflow
  validates it by loading the logged model and predicting once).
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from colonpipe.register.serve_config import ServeConfig
from colonpipe.register.wheel import build_wheel

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from colonpipe.tracking.logger import MlflowLogger

logger = logging.getLogger(__name__)

WHEEL_KEY = "colonpipe_wheel"  # artifact key, and the folder (artifacts/colonpipe_wheel/) holding the wheel


def pinned_requirements() -> list[str]:
    """``name==version`` of every runtime requirement as installed here (local tags dropped)."""
    from colonpipe.register.pyfunc import REQUIREMENTS

    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def signature():
    """image: str, question: str, task: optional str -> one answer string per row."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec("string", "image"), ColSpec("string", "question"),
                     ColSpec("string", "task", required=False)])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string")]))


def example_input():
    """One row: a 16x16 gray PNG as base64 and a CLS question (what the UI shows as example)."""
    import pandas as pd
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 96, 96)).save(buf, format="PNG")
    return pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode()],
                         "question": ["Categorize the object."], "task": ["cls"]})


def merged_copy(model_dir: Path, out_dir: Path, *, dtype: str = "bfloat16") -> Path:
    """``model_dir`` as a folder that loads on its own, at ``out_dir``: a training output merged
    (``colonpipe merge``, ``dtype``), a saved ColonGPT as it is (returned unchanged)."""
    from colonpipe.infer.load import ModelLoadError

    model_dir = Path(model_dir)
    if not (model_dir / "train_config.json").is_file():
        return model_dir
    from colonpipe.model.merge_adapter import DTYPES, merge_to_dir

    try:
        return merge_to_dir(model_dir, Path(out_dir), dtype=DTYPES[dtype])
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"{model_dir}: cannot merge the training output ({exc})") from exc


@contextlib.contextmanager
def servable_dir(model_dir: Path, *, dtype: str = "bfloat16") -> Iterator[Path]:
    """Yield a self-contained model folder for ``model_dir`` (merged into a temp dir if needed)."""
    from colonpipe.infer.load import ModelLoadError

    model_dir = Path(model_dir)
    if (model_dir / "train_config.json").is_file():
        with tempfile.TemporaryDirectory(prefix="colonpipe-merged-") as tmp:
            yield merged_copy(model_dir, Path(tmp) / "model", dtype=dtype)
    elif (model_dir / "config.json").is_file():
        yield model_dir
    else:
        raise ModelLoadError(f"{model_dir}: neither a training output (train_config.json) "
                             "nor a saved ColonGPT (config.json); nothing servable to log")


@contextlib.contextmanager
def _active(log: "MlflowLogger") -> Iterator[None]:
    """Make ``log``'s run MLflow's active run (unless it already is) for the fluent API."""
    import mlflow

    mlflow.set_tracking_uri(log.client.tracking_uri)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == log.run_id:
        yield
        return
    with mlflow.start_run(run_id=log.run_id, nested=active is not None):
        yield


def log_pyfunc_model(
    log: "MlflowLogger",
    model_dir: Path,
    *,
    name: str = "model",
    config: Optional[ServeConfig] = None,
    dtype: str = "bfloat16",
) -> "ModelInfo":
    """Log ``model_dir`` as the servable pyfunc in ``log``'s run; ``.model_uri`` is ``models:/m-...``.

    ``dtype``: the weights' dtype when a training output is merged first.
    """
    import mlflow

    from colonpipe.register.pyfunc import ARTIFACT_KEY, ENTRY_FILE

    config = config or ServeConfig()
    with servable_dir(Path(model_dir), dtype=dtype) as folder, \
            tempfile.TemporaryDirectory(prefix="colonpipe-wheel-out-") as tmp, _active(log):
        wheel_dir = Path(tmp) / WHEEL_KEY  # MLflow stores a folder artifact under its base name
        wheel = build_wheel(wheel_dir)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(ENTRY_FILE),
            artifacts={ARTIFACT_KEY: str(folder), WHEEL_KEY: str(wheel_dir)},
            model_config=config.to_mapping(),
            signature=signature(),
            input_example=example_input(),
            pip_requirements=[*pinned_requirements(), f"artifacts/{WHEEL_KEY}/{wheel.name}"],
        )
    logger.info("logged pyfunc model %s (%s) from %s", info.model_uri, name, model_dir)
    return info
