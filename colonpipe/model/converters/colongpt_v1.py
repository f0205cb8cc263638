"""ColonGPT-v1 (``ai4colonoscopy/ColonGPT-v1``, IntelliScope repo) -> a colonpipe base-model folder.

Upstream is LLaVA/Bunny-style: one ``ColongptPhiForCausalLM`` whose Phi decoder also owns the
vision tower and the projector. Its parameter names, and where each goes here:

==================================================  =============================================
upstream                                            colonpipe
==================================================  =============================================
``model.embed_tokens.*``, ``model.layers.N.*``,     ``language_model.model.*`` (the same Phi names:
``model.final_layernorm.*``                         ``self_attn.{q,k,v}_proj``, ``dense``, ``mlp.fc1/fc2``)
``lm_head.weight`` (rebuilt without bias)           ``language_model.lm_head.weight`` (``lm_head_bias``
                                                    false); a base Phi's ``lm_head.bias`` is dropped
``model.vision_tower.vision_tower.vision_model.*``  ``vision_tower.*`` (SiglipVisionModel; its pooling
                                                    ``head.*`` is dropped: features are patch tokens)
``model.mm_projector.model.token_trans_layer.0.*``  ``multi_modal_projector.linear_in.*`` (ppc)
``model.mm_projector.model.conv.*``                 ``multi_modal_projector.conv.*`` (one shared conv)
``model.mm_projector.model.linear_layer.*``         ``multi_modal_projector.linear_out.*``
``model.mm_projector.0.*`` / ``.2.*``               ``linear_1`` / ``linear_2`` (``mlp2x_gelu``)
``model.mm_projector.weight`` / ``.bias``           ``linear`` (``linear``)
==================================================  =============================================

Config fields read from the upstream ``config.json``: the Phi fields (``hidden_size``,
``num_hidden_layers``, ``vocab_size``, ...) become ``text_config``; ``mm_projector_type``,
``mm_hidden_size`` (must equal the vision width), ``mm_vision_tower`` (recorded; the tower config
comes from ``vision``), ``image_aspect_ratio`` (must be ``pad``: colonpipe pads to a square with the
mean colour), ``mm_vision_select_layer`` (default -2, the penultimate layer), ``use_s2`` (must be
false). An unknown multimodal field (``mm_*``, ``*vision*``, ``*image*``) is an error.

Variants (see docs/models.md):
- merged (the published v1 model, or any full save): weights in the source folder;
- LoRA (a stage-2 output: ``adapter_config.json`` + adapter weights + ``non_lora_trainables``):
  merged here onto the base LLM ``llm`` (Phi-1.5), the projector taken from ``non_lora_trainables``.
A checkpoint without vision tower weights (frozen towers are often left out) takes them from
``vision``. Missing, unexpected or mis-shaped tensors are errors that name them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PhiConfig, SiglipVisionModel

from colonpipe import atomic
from colonpipe.model.checks import check_tokenizer, check_tokenizer_files
from colonpipe.model.configuration import ColonGPTConfig
from colonpipe.model.converters.weights import read_weights, merge_lora, load_tensor_file, resolve_folder
from colonpipe.model.modeling import ColonGPTForConditionalGeneration
from colonpipe.model.presets import KNOWN_VISION, load_base, load_checked, pretrained_config, vision_image_settings
from colonpipe.model.processing import ColonGPTProcessor
from colonpipe.model.tokenizer import IMAGE_TOKEN

logger = logging.getLogger(__name__)

HUB_ID = "ai4colonoscopy/ColonGPT-v1"
CONVERSION_FILE = "conversion.json"
NON_LORA_FILES = ("non_lora_trainables.safetensors", "non_lora_trainables.bin")
MM_FIELDS = {  # upstream multimodal / training fields this converter understands
    "mm_vision_tower", "mm_hidden_size", "mm_projector_type", "image_aspect_ratio", "mm_vision_select_layer",
    "mm_vision_select_feature", "use_s2", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "mm_projector_lr",
    "unfreeze_vision_tower", "use_mm_proj", "tokenizer_padding_side", "tokenizer_model_max_length",
}
GENERIC_FIELDS = {"architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "auto_map",
                  "_name_or_path", "use_cache"}
PPC_PARTS = {"model.token_trans_layer.0": "linear_in", "model.conv": "conv", "model.linear_layer": "linear_out"}
MLP_PARTS = {"0": "linear_1", "2": "linear_2"}
VISION_PREFIX, PROJECTOR_PREFIX = "model.vision_tower.vision_tower.", "model.mm_projector."
LM_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.final_layernorm.")


# --------------------------------------------------------------------------- names
def _projector_name(rest: str, projector_type: str) -> str | None:
    module, _, leaf = rest.rpartition(".")
    if projector_type.startswith("ppc"):
        part = PPC_PARTS.get(module)
    elif projector_type == "mlp2x_gelu":
        part = MLP_PARTS.get(module)
    else:
        part = "linear" if module == "" else None
    return f"multi_modal_projector.{part}.{leaf}" if part else None


def map_key(key: str, projector_type: str) -> str | None:
    """The colonpipe name of upstream tensor ``key``; ``""`` for a tensor dropped on purpose
    (SigLIP's pooling head, a base Phi's lm_head bias); ``None`` for a name this converter does not know."""
    if key == "lm_head.weight":
        return "language_model.lm_head.weight"
    if key.startswith(VISION_PREFIX):
        rest = key[len(VISION_PREFIX):].removeprefix("vision_model.")  # transformers 5 nests no vision_model
        return "" if rest.startswith("head.") else "vision_tower." + rest
    if key == "lm_head.bias":
        return ""
    if key.startswith(PROJECTOR_PREFIX):
        return _projector_name(key[len(PROJECTOR_PREFIX):], projector_type)
    if key.startswith(LM_PREFIXES):
        return "language_model." + key
    return None


def convert_state(upstream: dict[str, torch.Tensor], projector_type: str, source: str) -> tuple[dict, list[str]]:
    """Upstream tensors -> (colonpipe tensors, dropped names); unknown names raise ``ValueError``."""
    out, dropped, unknown = {}, [], []
    for key, tensor in upstream.items():
        name = map_key(key, projector_type)
        if name is None:
            unknown.append(key)
        elif name == "":
            dropped.append(key)
        else:
            out[name] = tensor
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} tensor(s) with names a ColonGPT-v1 checkpoint does not have "
                         f"(projector {projector_type!r}): {sorted(unknown)[:10]}")
    return out, dropped


# --------------------------------------------------------------------------- config
def colongpt_config(upstream: dict, vision: str, source: str, *, image_token_id: int) -> ColonGPTConfig:
    """The ``ColonGPTConfig`` of an upstream ``config.json`` dict (see the module docstring)."""
    problems = []
    unknown = sorted(k for k in upstream if k not in MM_FIELDS and k not in GENERIC_FIELDS
                     and ("mm_" in k or "vision" in k or "image" in k))
    if unknown:
        problems.append(f"unknown multimodal config fields {unknown}")
    for field in ("mm_projector_type", "mm_hidden_size", "hidden_size", "num_hidden_layers", "vocab_size"):
        if field not in upstream:
            problems.append(f"missing config field {field!r}")
    if upstream.get("image_aspect_ratio", "pad") != "pad":
        problems.append(f"image_aspect_ratio {upstream['image_aspect_ratio']!r}: only 'pad' is supported")
    if upstream.get("use_s2"):
        problems.append("use_s2: true (multi-scale S2 towers) is not supported")
    if upstream.get("mm_vision_select_feature", "patch") != "patch":
        problems.append(f"mm_vision_select_feature {upstream['mm_vision_select_feature']!r}: only 'patch'")
    vision_cfg = pretrained_config(vision, KNOWN_VISION, "siglip_vision_model", vision=True)
    vision_cfg.vision_use_head = False
    if "mm_hidden_size" in upstream and upstream["mm_hidden_size"] != vision_cfg.hidden_size:
        problems.append(f"mm_hidden_size {upstream['mm_hidden_size']} != the vision tower {vision!r} width "
                        f"{vision_cfg.hidden_size}: pass the tower it was trained with (vision)")
    if problems:
        raise ValueError(f"{source}/config.json: " + "; ".join(problems))
    phi_fields = set(PhiConfig().to_dict()) - GENERIC_FIELDS
    text_cfg = AutoConfig.for_model("phi", **{k: v for k, v in upstream.items() if k in phi_fields})
    return ColonGPTConfig(vision_config=vision_cfg, text_config=text_cfg,
                          projector_type=upstream["mm_projector_type"],
                          vision_feature_layer=int(upstream.get("mm_vision_select_layer", -2)),
                          image_token_id=image_token_id, lm_head_bias=False)


# --------------------------------------------------------------------------- sources
def _upstream_tensors(src: Path, llm: str) -> tuple[dict[str, torch.Tensor], str]:
    """All upstream-named tensors of a merged or LoRA checkpoint, and the variant's name."""
    if not (src / "adapter_config.json").is_file():
        return read_weights(src, skip=NON_LORA_FILES), "merged"
    base = read_weights(resolve_folder(llm))
    state = merge_lora(base, src)
    extra = next((src / f for f in NON_LORA_FILES if (src / f).is_file()), None)
    if extra is None:
        raise ValueError(f"{src}: a LoRA checkpoint needs its projector ({' or '.join(NON_LORA_FILES)})")
    for key, tensor in load_tensor_file(extra).items():
        key = key.removeprefix("base_model.model.")
        state[key.removeprefix("model.") if key.startswith("model.model.") else key] = tensor
    return state, "lora"


def _vision_state(state: dict, config: ColonGPTConfig, vision: str, expected: dict) -> None:
    """Fill the vision tower from ``vision`` when the checkpoint holds none of it (in place)."""
    if any(k.startswith("vision_tower.") for k in state):
        return
    logger.info("checkpoint has no vision tower weights: loading them from %s", vision)
    tower = load_checked(SiglipVisionModel, vision, config.vision_config)
    state.update({f"vision_tower.{k}": v for k, v in tower.state_dict().items() if f"vision_tower.{k}" in expected})


def _check_names(state: dict, expected: dict, source: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or shapes:
        raise ValueError(f"{source}: converted weights do not fill the model: missing {missing[:10]} "
                         f"({len(missing)}), unexpected {unexpected[:10]} ({len(unexpected)}), "
                         f"shape mismatch {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in shapes[:5]]}")


def _tokenizer(src: Path, llm: str):
    folder = src if any((src / n).is_file() for n in ("tokenizer.json", "vocab.json")) else resolve_folder(llm)
    check_tokenizer_files(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    tokenizer.pad_token = tokenizer.eos_token  # Phi-1.5: pad = eos = unk
    return tokenizer, folder


# --------------------------------------------------------------------------- entry point
def convert_colongpt_v1(source: str | Path, out_dir: str | Path, *, llm: str = "microsoft/phi-1_5",
                        vision: str = "google/siglip-so400m-patch14-384", save_dtype: str = "float32") -> Path:
    """Convert a ColonGPT-v1 checkpoint (hub id or folder; merged or LoRA) into ``out_dir``.

    ``llm``: the base LLM of a LoRA checkpoint (and its tokenizer when the checkpoint has none);
    ``vision``: the SigLIP tower (config always; weights when the checkpoint holds none).
    The result is a ``load_base`` folder (config, safetensors, processor, ``conversion.json``),
    validated by loading it back before it replaces ``out_dir``.
    """
    out_dir = Path(out_dir)
    src = resolve_folder(source)
    upstream_cfg = json.loads((src / "config.json").read_text()) if (src / "config.json").is_file() else None
    if upstream_cfg is None:
        raise ValueError(f"{src}: no config.json: not a ColonGPT-v1 checkpoint")
    tokenizer, tok_folder = _tokenizer(src, llm)
    config = colongpt_config(upstream_cfg, vision, str(src), image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    check_tokenizer(tokenizer, tok_folder, embedding_rows=config.text_config.vocab_size)
    with torch.device("meta"):
        expected = ColonGPTForConditionalGeneration(config).state_dict()
    upstream, variant = _upstream_tensors(src, llm)
    state, dropped = convert_state(upstream, config.projector_type, str(src))
    _vision_state(state, config, vision, expected)
    _check_names(state, expected, str(src))
    dtype = getattr(torch, save_dtype)
    image = vision_image_settings(vision, config.vision_config.image_size)
    processor = ColonGPTProcessor(tokenizer, image_seq_length=config.image_seq_length, **image)
    with atomic.staged_dir(out_dir) as tmp:
        config.save_pretrained(tmp)
        save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        eos = processor.eos_token_id
        GenerationConfig(eos_token_id=eos, pad_token_id=eos, bos_token_id=tokenizer.bos_token_id).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        atomic.write_json(tmp / CONVERSION_FILE, {
            "source": str(source), "variant": variant, "llm": llm if variant == "lora" else None, "vision": vision,
            "dropped": sorted(dropped), "tensors": len(state)}, ensure_ascii=True)
        load_base(tmp)  # the loud check: every weight, the tokenizer, the template and the grid
    logger.info("converted %s ColonGPT-v1 checkpoint %s into %s (%d tensors, dropped %d)", variant, source,
                out_dir, len(state), len(dropped))
    return out_dir


def main(argv: list[str]) -> int:
    """``colonpipe import-colongpt SRC DST [--llm L] [--vision V] [--dtype D]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="colonpipe import-colongpt", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help=f"hub id (e.g. {HUB_ID}) or local checkpoint folder (merged or LoRA)")
    parser.add_argument("out_dir", type=Path, help="receives the colonpipe model folder")
    parser.add_argument("--llm", default="microsoft/phi-1_5", help="base LLM of a LoRA checkpoint")
    parser.add_argument("--vision", default="google/siglip-so400m-patch14-384", help="SigLIP tower (config/weights)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    args = parser.parse_args(argv)
    try:
        convert_colongpt_v1(args.source, args.out_dir, llm=args.llm, vision=args.vision, save_dtype=args.dtype)
    except (ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    return 0
