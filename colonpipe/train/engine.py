"""One step interface for both back-ends: ``engine(**batch)``, ``engine.backward(loss)``, ``engine.step()``.

``deepspeed.initialize`` returns a ``DeepSpeedEngine`` with exactly this interface;
``PlainEngine`` gives the same to a plain PyTorch model (optionally DDP-wrapped), so running
without DeepSpeed is a params switch. Both step the optimizer and the LR schedule only on
gradient-accumulation boundaries, and clip gradients to ``max_grad_norm`` there.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch import nn

from colonpipe.params import TrainParams
from colonpipe.train.deepspeed_config import build_deepspeed_config, resolve_auto

logger = logging.getLogger(__name__)


class PlainEngine:
    """Plain PyTorch: autocast (bf16 on GPU), loss / accum, clip + step at the boundary."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *,
                 grad_accum: int, max_grad_norm: float, autocast_dtype: torch.dtype | None,
                 device: torch.device, ddp: bool):
        self.module = model
        self.wrapped = nn.parallel.DistributedDataParallel(model) if ddp else model
        self.optimizer, self.lr_scheduler = optimizer, scheduler
        self.grad_accum, self.max_grad_norm = grad_accum, max_grad_norm
        self.autocast_dtype, self.device = autocast_dtype, device
        self.micro_steps = 0
        self._params = [p for p in model.parameters() if p.requires_grad]

    def is_gradient_accumulation_boundary(self) -> bool:
        return (self.micro_steps + 1) % self.grad_accum == 0

    def __call__(self, **batch: torch.Tensor) -> Any:
        sync = contextlib.nullcontext()
        if isinstance(self.wrapped, nn.parallel.DistributedDataParallel) and not self.is_gradient_accumulation_boundary():
            sync = self.wrapped.no_sync()  # all-reduce once per optimizer step, not per micro batch
        cast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                if self.autocast_dtype else contextlib.nullcontext())
        with sync, cast:
            return self.wrapped(**batch)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def step(self) -> None:
        if self.is_gradient_accumulation_boundary():
            if self.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self._params, self.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.micro_steps += 1


def build_engine(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, p: TrainParams, *,
                 device: torch.device, bf16: bool, world_size: int, hidden_size: int):
    """DeepSpeed engine when ``p.deepspeed.enabled``, else ``PlainEngine`` (DDP when world_size > 1)."""
    if not p.deepspeed.enabled:
        model.to(device)
        return PlainEngine(model, optimizer, scheduler, grad_accum=p.grad_accum, max_grad_norm=p.max_grad_norm,
                           autocast_dtype=torch.bfloat16 if bf16 else None, device=device, ddp=world_size > 1)
    import deepspeed

    config = resolve_auto(build_deepspeed_config(p, world_size=world_size, bf16=bf16), hidden_size=hidden_size)
    logger.info("DeepSpeed ZeRO-%d, bf16=%s, offload optimizer=%s param=%s", p.deepspeed.zero_stage, bf16,
                p.deepspeed.offload_optimizer, p.deepspeed.offload_param)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    return engine
