"""Batches for training: right-padded ids/labels/mask from the processor, stacked pixels."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from colonpipe.model.processing import ColonGPTProcessor, EncodedExample


class TrainingCollator:
    """Callable for ``DataLoader(collate_fn=...)``: examples from ``InstructionDataset`` ->
    ``input_ids``/``attention_mask``/``labels`` (B, L) int64 and ``pixel_values`` (B, 3, S, S)."""

    def __init__(self, processor: ColonGPTProcessor):
        self.processor = processor

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("empty batch")
        encoded = [EncodedExample(e["input_ids"], e["labels"]) for e in examples]
        batch = self.processor.collate_training(encoded)
        batch["pixel_values"] = torch.stack([e["pixel_values"] for e in examples])
        return batch
