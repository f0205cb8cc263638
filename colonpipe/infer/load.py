"""Load a model folder for inference: ``(model, processor)`` in eval mode on one device.

Accepted folders:
- a saved ColonGPT (``save_pretrained``: config.json + safetensors + processor files);
- a training output (``models/<stage>/final``, marked by ``train_config.json``): base model +
  PEFT adapter + projector via ``colonpipe.model.trained.load_trained``, the adapter merged
  into the weights so generation pays no LoRA overhead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from colonpipe.model.presets import load_base
from colonpipe.model.trained import load_trained

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The folder is not a loadable ColonGPT model; the message names it and says why."""


def load_for_inference(
    model_dir: str | Path, *, device: str = "cpu", dtype: str = "float32",
    attn_implementation: str = "sdpa", threads: int = 0,
) -> tuple[Any, Any]:
    """``(model, processor)`` from ``model_dir``, in ``dtype`` on ``device``, in eval mode."""
    if threads:
        torch.set_num_threads(threads)
    model_dir = Path(model_dir)
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r} (known: {', '.join(_DTYPES)})")
    try:
        if (model_dir / "train_config.json").is_file():  # a training output: base + adapter + projector
            model, processor = load_trained(model_dir, merge=True, dtype=_DTYPES[dtype],
                                            attn_implementation=attn_implementation)
        elif (model_dir / "config.json").is_file():  # a plain saved ColonGPT
            model, processor = load_base(model_dir, dtype=_DTYPES[dtype], attn_implementation=attn_implementation)
        else:
            raise ModelLoadError(f"{model_dir}: neither a training output (train_config.json) "
                                 "nor a saved ColonGPT (config.json)")
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{model_dir}: cannot load the model ({exc})") from exc
    model.to(device).eval()
    logger.info("loaded %s (%s, %s, %s)", model_dir, device, dtype, attn_implementation)
    return model, processor

