"""DeepSpeed configuration built from a training section (no JSON file to keep in sync).

``build_deepspeed_config`` writes bucket sizes as ``"auto"`` (as in HF's integration);
``resolve_auto`` then fills them from the model width with the formulas transformers uses:
``reduce_bucket_size = h*h``, ``stage3_prefetch_bucket_size = 0.9*h*h``,
``stage3_param_persistence_threshold = 10*h``.
"""

from __future__ import annotations

import copy
from typing import Any

from colonpipe.params import TrainParams

AUTO = "auto"


def build_deepspeed_config(p: TrainParams, *, world_size: int, bf16: bool) -> dict[str, Any]:
    """DeepSpeed config dict for ``p`` with ``world_size`` data-parallel ranks."""
    ds = p.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 1:
        zero.update(overlap_comm=True, contiguous_gradients=True, reduce_bucket_size=AUTO)
    if ds.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=AUTO,
            stage3_param_persistence_threshold=AUTO,
            stage3_gather_16bit_weights_on_model_save=False,  # we gather trainables ourselves
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": p.batch_size,
        "gradient_accumulation_steps": p.grad_accum,
        "train_batch_size": p.batch_size * p.grad_accum * world_size,
        "gradient_clipping": p.max_grad_norm,
        "bf16": {"enabled": bf16},
        "zero_optimization": zero,
        # torch AdamW is a "client" optimizer: allowed under ZeRO, and avoids JIT-building fused_adam.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,  # our loop logs; keep DeepSpeed quiet
        "wall_clock_breakdown": False,
    }


def resolve_auto(config: dict[str, Any], *, hidden_size: int) -> dict[str, Any]:
    """Copy of ``config`` with every ``"auto"`` bucket size replaced from ``hidden_size``."""
    out = copy.deepcopy(config)
    zero = out.get("zero_optimization", {})
    values = {
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }
    for key, value in values.items():
        if zero.get(key) == AUTO:
            zero[key] = value
    leftover = [k for k, v in zero.items() if v == AUTO]
    if leftover:
        raise ValueError(f"deepspeed config: no rule to resolve 'auto' for {leftover}")
    return out
