"""What a saved model folder holds, read without loading it."""

from __future__ import annotations

import math
from pathlib import Path

from safetensors import safe_open


def saved_parameter_count(folder: str | Path) -> int:
    """Parameters stored in ``folder``'s ``*.safetensors`` files, read from the headers only."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to count")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            total += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())
    return total
