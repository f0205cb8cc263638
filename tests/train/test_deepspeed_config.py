"""DeepSpeed config from params: ZeRO stage, offload, bf16, batch arithmetic, "auto" buckets."""

from __future__ import annotations

import pytest

from colonpipe.params import DeepSpeedParams, ParamsError, TrainParams
from colonpipe.train.deepspeed_config import build_deepspeed_config, resolve_auto


def test_zero3_offload_bf16():
    p = TrainParams(batch_size=16, grad_accum=2,
                    deepspeed=DeepSpeedParams(enabled=True, zero_stage=3, offload_optimizer=True, offload_param=True))
    cfg = build_deepspeed_config(p, world_size=2, bf16=True)
    assert cfg["train_batch_size"] == 64  # the recipe's global batch: 2 GPUs x 16 x 2
    assert cfg["bf16"] == {"enabled": True}
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert zero["reduce_bucket_size"] == "auto" and zero["stage3_prefetch_bucket_size"] == "auto"
    resolved = resolve_auto(cfg, hidden_size=2048)["zero_optimization"]
    assert resolved["reduce_bucket_size"] == 2048 * 2048
    assert resolved["stage3_prefetch_bucket_size"] == int(0.9 * 2048 * 2048)
    assert resolved["stage3_param_persistence_threshold"] == 10 * 2048
    assert cfg["zero_optimization"]["reduce_bucket_size"] == "auto"  # resolve_auto copies


@pytest.mark.parametrize("stage", [0, 2])
def test_lower_stages_have_no_zero3_keys(stage):
    cfg = build_deepspeed_config(TrainParams(deepspeed=DeepSpeedParams(enabled=True, zero_stage=stage)),
                                 world_size=1, bf16=False)
    zero = cfg["zero_optimization"]
    assert zero["stage"] == stage and not any(k.startswith("stage3") for k in zero)
    assert "offload_optimizer" not in zero and cfg["bf16"] == {"enabled": False}
    assert not [v for v in resolve_auto(cfg, hidden_size=64)["zero_optimization"].values() if v == "auto"]


def test_offload_param_needs_zero3():
    with pytest.raises(ParamsError, match="offload_param needs zero_stage 3"):
        TrainParams(deepspeed=DeepSpeedParams(enabled=True, zero_stage=2, offload_param=True))
