"""Trained weights in a checkpoint dir: write them (rank-collective under ZeRO-3) and load them back.

Only what training changed is stored: the PEFT adapter (``adapter/``), the projector
(``projector.safetensors``) and any part trained in full (``full_parts.safetensors``). The base
model comes from the path recorded in ``train_config.json``. Every load validates keys: a
missing or unexpected key is an error naming the file.

The adapter is self-contained: it also carries the projector and the full parts as PEFT
``modules_to_save`` (keys ``base_model.model.<module>.<param>``, the layout PEFT itself writes),
and records its base as an absolute path (``base_model_name_or_path``; a hub id stays as it is).
So ``PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), "final/adapter")``
restores the whole trained model with transformers + peft + ``import colonpipe.model`` only. The
copies in ``projector.safetensors`` / ``full_parts.safetensors`` stay the ones colonpipe resumes
from (the training model has no ``modules_to_save`` wrappers).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from colonpipe.model import checkpoint_files as ck
from colonpipe.model.presets import load_base

logger = logging.getLogger(__name__)

PART_MODULES = {"vision": "vision_tower", "projector": "multi_modal_projector", "llm": "language_model"}
PEFT_PREFIX = "base_model.model."  # how PEFT names a module of the wrapped model in adapter files


def base_of(model: nn.Module) -> nn.Module:
    """The ColonGPT model under an optional PEFT wrapper."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _gathered(params: list[nn.Parameter]):
    """Full (un-partitioned) parameters on every rank under ZeRO-3; a no-op otherwise."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_trainables(directory: Path, model: nn.Module, *, full_parts: list[str], is_main: bool) -> None:
    """Write adapter / projector / full parts of ``model`` into ``directory``.

    Collective under ZeRO-3 (every rank must call); only ``is_main`` writes files.
    ``full_parts``: part names (``vision``/``llm``) trained in full, saved besides the projector.
    """
    base = base_of(model)
    modules = {"projector": base.multi_modal_projector}
    modules.update({part: getattr(base, PART_MODULES[part]) for part in full_parts})
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    params = lora + [p for m in modules.values() for p in m.parameters()]
    with _gathered(params):
        if not is_main:
            return
        save_file(_cpu(modules["projector"].state_dict()), str(directory / ck.PROJECTOR_FILE))
        full = {f"{PART_MODULES[part]}.{k}": v for part in full_parts for k, v in modules[part].state_dict().items()}
        if full:
            save_file(_cpu(full), str(directory / ck.FULL_PARTS_FILE))
        if isinstance(model, PeftModel):
            model.save_pretrained(str(directory / ck.ADAPTER_DIR))
            _make_self_contained(directory / ck.ADAPTER_DIR, base.name_or_path,
                                 {PART_MODULES.get(k, k): m for k, m in modules.items()})


def _portable_base(name_or_path: str) -> str:
    """An existing local folder as its absolute path (``models/base`` -> ``/.../models/base``);
    anything else (a hub id) unchanged."""
    path = Path(name_or_path)
    return str(path.resolve()) if path.is_dir() else name_or_path


def _make_self_contained(adapter_dir: Path, base_name: str, modules: dict[str, nn.Module]) -> None:
    """Add ``modules`` (module name -> trained module) to the PEFT adapter as ``modules_to_save``
    and record the base by :func:`_portable_base`."""
    weights = adapter_dir / "adapter_model.safetensors"
    state = load_file(str(weights))
    for name, module in modules.items():
        state.update({f"{PEFT_PREFIX}{name}.{k}": v for k, v in _cpu(module.state_dict()).items()})
    save_file(state, str(weights), metadata={"format": "pt"})
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["modules_to_save"] = sorted(set(config.get("modules_to_save") or []) | set(modules))
    config["base_model_name_or_path"] = _portable_base(base_name)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{source}: keys do not match the model: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")


def load_projector(model: nn.Module, path: Path) -> None:
    """Load ``projector.safetensors`` (strict) into ``model``'s projector."""
    _load_strict(base_of(model).multi_modal_projector, load_file(str(path)), path)


def load_full_parts(model: nn.Module, path: Path) -> None:
    """Load ``full_parts.safetensors`` into the parts it names; every key must exist in the model."""
    state = load_file(str(path))
    own = base_of(model).state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"{path}: keys not in the model: {unknown[:5]}")
    base_of(model).load_state_dict(state, strict=False)


def load_adapter_into(model: PeftModel, adapter_dir: Path) -> None:
    """Copy adapter weights from ``adapter_dir`` into an already LoRA-wrapped ``model`` (resume).

    The ``modules_to_save`` copies are skipped: resume restores those parts from
    ``projector.safetensors`` / ``full_parts.safetensors``.
    """
    path = adapter_dir / "adapter_model.safetensors"
    saved = json.loads((adapter_dir / "adapter_config.json").read_text()).get("modules_to_save") or []
    state = {k: v for k, v in load_file(str(path)).items()
             if not any(k.startswith(f"{PEFT_PREFIX}{name}.") for name in saved)}
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{path}: adapter keys not in the model: {unexpected[:5]}")


def load_trainables(model: nn.Module, directory: Path) -> None:
    """Restore every trained tensor written by ``save_trainables`` into ``model`` (same parts setup)."""
    load_projector(model, directory / ck.PROJECTOR_FILE)
    if (directory / ck.FULL_PARTS_FILE).is_file():
        load_full_parts(model, directory / ck.FULL_PARTS_FILE)
    if (directory / ck.ADAPTER_DIR).is_dir():
        if not isinstance(model, PeftModel):
            raise ValueError(f"{directory}: holds a LoRA adapter but the model has no LoRA layers")
        load_adapter_into(model, directory / ck.ADAPTER_DIR)


def load_trained(directory: Path, *, base_dir: Path | None = None, merge: bool = False,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 attn_implementation: str | None = None):
    """Model + processor of a trained checkpoint dir (``final/`` or ``step-N/``).

    Loads the base recorded in ``train_config.json`` (or ``base_dir``), then the projector, the
    full parts and the adapter. ``merge=True`` folds the adapter into the weights and returns a
    plain ColonGPT model; otherwise a ``PeftModel`` is returned when there is an adapter.
    """
    directory = Path(directory)
    problem = ck.check_dir(directory)
    if problem:
        raise ValueError(f"{directory}: not a usable training output: {problem}")
    base_dir = Path(base_dir or ck.read_train_config(directory)["base_dir"])
    model, processor = load_base(base_dir, attn_implementation=attn_implementation)
    load_projector(model, directory / ck.PROJECTOR_FILE)
    if (directory / ck.FULL_PARTS_FILE).is_file():
        load_full_parts(model, directory / ck.FULL_PARTS_FILE)
    if (directory / ck.ADAPTER_DIR).is_dir():
        model = PeftModel.from_pretrained(model, str(directory / ck.ADAPTER_DIR))
        if merge:
            model = model.merge_and_unload()
    model = model.to(device=device, dtype=dtype) if dtype else model.to(device)
    return model.eval(), processor
