"""Size of the weights a registration stores: before (a second, fp32 merged copy) and after (bf16).

    python benchmarks/registered_size.py

For each preset the ColonGPT model is built from its config on torch's ``meta`` device (no
weights, no download: ``colonpipe.model.presets.config_for_preset``) and its parameters are
counted; fp32 stores 4 bytes per parameter, bf16 2. For the ``tiny`` preset the model is also
really built and saved both ways (``save_pretrained``), and the files are measured.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def count_params(preset: str) -> int:
    from colonpipe.model import ColonGPTForConditionalGeneration, config_for_preset
    from colonpipe.params import ModelParams

    config = config_for_preset(ModelParams(preset=preset), image_token_id=1)
    with torch.device("meta"):
        model = ColonGPTForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())


def measured_tiny() -> dict[str, int]:
    """Bytes of ``model.safetensors`` of the tiny preset saved in fp32 and in bf16."""
    from colonpipe.model import ColonGPTForConditionalGeneration, config_for_preset
    from colonpipe.params import ModelParams

    model = ColonGPTForConditionalGeneration(config_for_preset(ModelParams(), image_token_id=1))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):
            folder = Path(tmp) / dtype
            model.to(getattr(torch, dtype)).save_pretrained(folder)
            out[dtype] = (folder / "model.safetensors").stat().st_size
    return out


def main() -> None:
    rows = {}
    for preset in ("tiny", "phi15-siglip"):
        n = count_params(preset)
        rows[preset] = {"params": n, "fp32_bytes": 4 * n, "bf16_bytes": 2 * n}
        print(f"{preset:13s} {n / 1e6:10.2f} M params: before (fp32 merged) {4 * n / 2**30:7.3f} GiB, "
              f"after (bf16) {2 * n / 2**30:7.3f} GiB")
    rows["tiny"]["measured_safetensors"] = measured_tiny()
    m = rows["tiny"]["measured_safetensors"]
    print(f"tiny measured model.safetensors: fp32 {m['float32'] / 2**20:.2f} MiB, bf16 {m['bfloat16'] / 2**20:.2f} MiB")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
