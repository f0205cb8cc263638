"""Next-token cross-entropy over the supervised (answer + EOS) positions.

``reduction="token"`` averages over every supervised token in the batch (LLaVA / HF default:
a 20-token box answer weighs 10x a 2-token class name). ``reduction="sample"`` first averages
within each dialogue, then over dialogues, so every record weighs the same whatever its answer
length (on the demo it starved REC: box answers then carry a third of the gradient, not most).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, *,
                   reduction: Literal["token", "sample"] = "token") -> torch.Tensor:
    """logits (B, L, V), labels (B, L) with -100 where unsupervised -> scalar loss (fp32).

    Position t predicts label t+1 (the shift happens here). Rows with no supervised token
    are left out of the sample mean.
    """
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="none").view_as(target)
    mask = (target != IGNORE_INDEX).to(per_token.dtype)
    if reduction == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    counts = mask.sum(dim=1)
    rows = counts > 0
    per_sample = (per_token * mask).sum(dim=1)[rows] / counts[rows]
    return per_sample.mean() if per_sample.numel() else per_token.sum() * 0.0
