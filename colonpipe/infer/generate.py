"""Batched greedy generation: length buckets, left padding, KV cache, per-sequence EOS stop.

Reference semantics (spec section 5): greedy, ``max_new_tokens`` per task, stop at
``<|endoftext|>``, strip whitespace. Batching must not change any answer, so:
- prompts are sorted by token length (ties by position) and cut into buckets, which keeps
  padding small; answers are put back in input order;
- prompts are LEFT-padded and padding is masked out, so every sequence sees the same
  positions and keys as when it runs alone (tested: batch 1 == batch N).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from PIL import Image
from transformers import GenerationConfig

logger = logging.getLogger(__name__)


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches of similar length (stable by index)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (input_ids, attention_mask), each (B, L_max) int64, padded on the left."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, length - len(p) :] = torch.as_tensor(p, dtype=torch.long)
        mask[i, length - len(p) :] = 1
    return ids, mask


@torch.inference_mode()
def generate_batch(
    model: Any,
    processor: Any,
    prompts: Sequence[Sequence[int]],
    pixel_values: torch.Tensor,
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
) -> list[str]:
    """Greedy answers for one batch.

    prompts: B token-id lists from ``processor.prompt_ids`` (image tokens expanded);
    pixel_values: (B, 3, S, S) from ``processor.preprocess_images``. Returns B stripped strings,
    each cut at its first EOS. ``min_new_tokens`` (benchmarks only) forbids EOS before it.
    """
    input_ids, attention_mask = left_pad(prompts, processor.pad_token_id)
    device = model.device
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        eos_token_id=processor.eos_token_id,
        pad_token_id=processor.pad_token_id,
        use_cache=True,
    )
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        pixel_values=pixel_values.to(device=device, dtype=model.dtype),
        generation_config=config,
    )
    return processor.decode_generated(out[:, input_ids.shape[1] :].cpu())


def generate_answers(
    model: Any,
    processor: Any,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    *,
    batch_size: int,
    max_new_tokens: int,
    min_new_tokens: int = 0,
) -> list[str]:
    """In-process batched generation over many samples; answers in the order of ``questions``.

    questions: human turns holding one ``<image>`` each; images: matching PIL images.
    """
    if len(questions) != len(images):
        raise ValueError(f"got {len(questions)} questions but {len(images)} images")
    prompts = [processor.prompt_ids(q) for q in questions]
    answers: list[str] = [""] * len(prompts)
    for bucket in length_buckets([len(p) for p in prompts], batch_size):
        pixels = processor.preprocess_images([images[i] for i in bucket])
        got = generate_batch(model, processor, [prompts[i] for i in bucket], pixels,
                             max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
        for i, a in zip(bucket, got):
            answers[i] = a
    return answers
