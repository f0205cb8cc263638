"""Log ColonGPT as the servable MLflow pyfunc (contract: ``colonpipe.register.pyfunc``).

``log_pyfunc_model`` makes the model folder self-contained first: a training output
(``final/`` with ``train_config.json``) refers to its base model by path, so it is merged
(adapter and projector folded into the base weights) into a temporary ``save_pretrained``
folder; a saved ColonGPT (``config.json``) is logged as it is. The logged model carries the
``ServeConfig`` (every key, so each can be overridden when serving; by default no
``image_roots``: images only as base64), a signature, a small input example (MLflow validates
it by loading the logged model and predicting once) and pip requirements pinned from this
environment.
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

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from colonpipe.tracking.logger import MlflowLogger

logger = logging.getLogger(__name__)


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


@contextlib.contextmanager
def servable_dir(model_dir: Path, *, dtype: str = "float32") -> Iterator[Path]:
    """Yield a self-contained model folder for ``model_dir`` (merged into a temp dir if needed)."""
    from colonpipe.infer.load import ModelLoadError

    model_dir = Path(model_dir)
    if (model_dir / "train_config.json").is_file():
        from colonpipe.model.merge_adapter import DTYPES, merge_to_dir

        with tempfile.TemporaryDirectory(prefix="colonpipe-merged-") as tmp:
            try:
                merged = merge_to_dir(model_dir, Path(tmp) / "model", dtype=DTYPES[dtype])
            except (ValueError, OSError) as exc:
                raise ModelLoadError(f"{model_dir}: cannot merge the training output ({exc})") from exc
            yield merged
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
    dtype: str = "float32",
) -> "ModelInfo":
    """Log ``model_dir`` as the servable pyfunc in ``log``'s run; ``.model_uri`` is ``models:/m-...``."""
    import mlflow

    from colonpipe.register.pyfunc import ARTIFACT_KEY, ENTRY_FILE

    config = config or ServeConfig()
    with servable_dir(Path(model_dir), dtype=dtype) as folder, _active(log):
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(ENTRY_FILE),
            artifacts={ARTIFACT_KEY: str(folder)},
            model_config=config.to_mapping(),
            signature=signature(),
            input_example=example_input(),
            pip_requirements=pinned_requirements(),
        )
    logger.info("logged pyfunc model %s (%s) from %s", info.model_uri, name, model_dir)
    return info
