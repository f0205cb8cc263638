"""Reading published checkpoint folders safely: safetensors, or ``.bin`` with ``weights_only=True``.

- :func:`resolve_folder`: a local folder as it is, a hub id downloaded (cached) by ``huggingface_hub``.
- :func:`read_weights`: every tensor of a folder's weight files (sharded or not), by name.
- :func:`merge_lora`: a PEFT LoRA adapter folded into base weights (``W += scale * B @ A``).

A ``.bin`` file is a pickle; it is only ever opened with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers (no code runs).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.json", "*.txt", "*.model")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
LORA_PREFIX = "base_model.model."


def resolve_folder(name: str | Path) -> Path:
    """``name`` as a local folder, or the hub snapshot of that repo id (downloaded once, then cached)."""
    path = Path(name)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), allow_patterns=list(WEIGHT_PATTERNS)))
    except Exception as exc:  # offline, unknown repo, no access: one clear message
        raise ValueError(f"{name}: not a local folder, and the hub download failed ({type(exc).__name__}: "
                         f"{exc}); download it first (huggingface-cli download {name} --local-dir DIR) "
                         "and pass the folder") from None


def load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """One safetensors file, or a ``.bin`` pickle read with ``weights_only=True`` (tensors only)."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: refused: not a plain tensor file ({exc}); convert it to safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors")
    return state


def read_weights(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Every tensor in ``folder``'s model weight files (``*.safetensors``, else ``*.bin``), by name.

    Files named in ``skip`` (adapters, non-LoRA trainables) are left out. Safetensors win when
    both formats are present (the usual hub layout ships the same weights twice).
    """
    files = [f for f in sorted(folder.glob("*.safetensors")) if f.name not in skip]
    if not files:
        files = [f for f in sorted(folder.glob("*.bin")) if f.name not in skip and f.name != "training_args.bin"]
    if not files:
        raise ValueError(f"{folder}: no weight files (*.safetensors or *.bin)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        part = load_tensor_file(f)
        clash = sorted(set(part) & set(state))
        if clash:
            raise ValueError(f"{f}: tensors also present in another weight file: {clash[:5]}")
        state.update(part)
    return state


def adapter_file(folder: Path) -> Path:
    """The PEFT adapter weights of ``folder`` (safetensors preferred)."""
    for name in ADAPTER_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"{folder}: adapter_config.json but no adapter weights ({' or '.join(ADAPTER_FILES)})")


def merge_lora(base: dict[str, torch.Tensor], folder: Path) -> dict[str, torch.Tensor]:
    """``base`` with the LoRA adapter in ``folder`` merged in (a new dict; ``base`` is not changed).

    Supports plain LoRA on Linear layers (``lora_A``/``lora_B``, scale ``alpha / r`` or
    ``alpha / sqrt(r)`` with rsLoRA). DoRA, ``modules_to_save`` and unknown adapter tensors are
    refused by name.
    """
    cfg = json.loads((folder / "adapter_config.json").read_text())
    if cfg.get("use_dora"):
        raise ValueError(f"{folder}: DoRA adapters are not supported (use_dora: true)")
    if cfg.get("modules_to_save"):
        raise ValueError(f"{folder}: adapters with modules_to_save {cfg['modules_to_save']} are not supported")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    scale = alpha / (r ** 0.5) if cfg.get("use_rslora") else alpha / r
    adapter = load_tensor_file(adapter_file(folder))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in adapter.items():
        name = key.removeprefix(LORA_PREFIX)
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in name and name.endswith("weight"):
                pairs.setdefault(name.split(marker)[0], {})[part] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{folder}: adapter tensors that are not LoRA A/B weights: {unknown[:10]}")
    merged = dict(base)
    for module, ab in sorted(pairs.items()):
        target = f"{module}.weight"
        if set(ab) != {"lora_A", "lora_B"} or target not in merged:
            raise ValueError(f"{folder}: LoRA for {module!r} is incomplete or has no base weight {target!r}")
        delta = (ab["lora_B"].float() @ ab["lora_A"].float()) * scale
        if cfg.get("fan_in_fan_out"):
            delta = delta.T
        merged[target] = (merged[target].float() + delta).to(merged[target].dtype)
    logger.info("merged LoRA r=%d alpha=%g into %d modules from %s", r, alpha, len(pairs), folder)
    return merged
