"""The servable model: an MLflow pyfunc that answers (image, question[, task]) rows with ColonGPT.

Input: a pandas DataFrame (or records / a dict of columns) with columns
- ``image``: the image as base64 bytes (a ``data:image/...;base64,`` prefix is allowed). A file
  path is accepted only under a folder the serve config lists in ``image_roots`` (none by
  default); see ``serve_input`` for how paths are resolved and refused;
- ``question``: the human turn; ``"<image>\\n"`` is prepended when it holds no ``<image>``
  (the ColonINST turn format);
- ``task`` (optional): ``cls`` / ``reg`` / ``rec`` / ``cap`` picks ``max_new_tokens`` from the
  ``ServeConfig`` saved with the model (default 40, ``cap`` 512); empty or missing -> default.

Output: one answer string per row, in row order. A bad row (unreadable image, unknown task,
a limit of the ``ServeConfig`` exceeded: rows, image bytes, pixels, question length) fails the
whole request with an ``MlflowException`` naming the row (HTTP 400 when served) before any
answer is generated. Each image is fitted to the model's input size as soon as it is decoded,
so a request holds at most one full-size decoded image at a time.

The model is logged "from code" (``pyfunc_entry.py`` is the model's code file, so no pickled
Python object is stored or loaded) with two artifacts: ``model_dir``, a self-contained
``save_pretrained`` ColonGPT folder (a training output, ``final/``, which names its base model
by path, is merged into such a folder first, in bfloat16), and ``colonpipe_wheel``, the
colonpipe wheel that ``requirements.txt`` names, so an environment built from the model's own
requirements can import ``colonpipe`` (``model_log``). ``load_context`` loads the folder through
``colonpipe.infer.load.load_for_inference`` on CPU by default with ``HF_HUB_OFFLINE=1``: no
network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import mlflow
import pandas as pd

from colonpipe.register.serve_config import ServeConfig
from colonpipe.register.serve_input import check_frame, decode_image, human_turn

logger = logging.getLogger(__name__)

ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")
ARTIFACT_KEY = "model_dir"
# What the served model needs at runtime; pinned from this venv so nothing is resolved.
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "peft", "accelerate",
                "pillow", "numpy", "pandas", "pyyaml")

__all__ = ["ARTIFACT_KEY", "ENTRY_FILE", "REQUIREMENTS", "ColonGPTPyfunc", "ServeConfig"]


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

        cfg = self.config
        frame = check_frame(model_input, cfg)
        tasks = frame["task"] if "task" in frame.columns else [None] * len(frame)
        budgets = [cfg.budget(t, row=i) for i, t in enumerate(tasks)]
        questions = [human_turn(q, row=i, max_chars=cfg.max_question_chars) for i, q in enumerate(frame["question"])]
        images = [self.processor.fit_image(decode_image(v, row=i, config=cfg)) for i, v in enumerate(frame["image"])]
        answers = [""] * len(frame)
        for budget in sorted(set(budgets)):
            rows = [i for i, b in enumerate(budgets) if b == budget]
            got = generate_answers(self.model, self.processor, [questions[i] for i in rows],
                                   [images[i] for i in rows], batch_size=self.config.batch_size,
                                   max_new_tokens=budget)
            for i, answer in zip(rows, got):
                answers[i] = answer
        return answers
