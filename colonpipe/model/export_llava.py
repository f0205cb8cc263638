"""A ColonGPT with a per-patch projector as a stock transformers ``LlavaForConditionalGeneration``.

``export_llava(model, processor, out_dir)`` writes a folder that plain transformers loads
(``LlavaForConditionalGeneration`` / ``AutoModelForImageTextToText`` + ``AutoProcessor``, no
colonpipe import, no ``trust_remote_code``) and whose logits equal the ColonGPT model's on the
same inputs. Only ``mlp2x_gelu`` and ``linear`` map onto LLaVA's projector; a ``ppc_*`` pyramid
has no LLaVA equivalent and is refused with :class:`ExportError`.

Weights (ColonGPT -> LLaVA):
- ``vision_tower.*`` -> ``model.vision_tower.*`` (the same SigLIP module; config copied);
- ``multi_modal_projector.linear_1/linear_2`` (``mlp2x_gelu``) -> ``model.multi_modal_projector.
  linear_1/linear_2`` with ``projector_hidden_act="gelu"`` (erf GELU, as ``nn.GELU()``);
  ``multi_modal_projector.linear`` (``linear``) -> ``linear_1``, with ``linear_2`` the identity
  and ``projector_hidden_act="linear"`` (LLaVA's projector always has two layers);
- ``language_model.model.*`` -> ``model.language_model.*``;
- ``language_model.lm_head``: Phi's head has a bias, LLaVA's head has none. The bias is folded
  exactly into the head weight and the final LayerNorm bias (:func:`fold_head_bias`), and
  ``lm_head.bias`` is written as zeros: transformers reports it as an unexpected key and ignores
  it, while servers that build the text model as ``PhiForCausalLM`` (vLLM) find the tensor they
  declare. Both compute the same logits.

Config: ``vision_feature_layer`` copied, ``vision_feature_select_strategy="full"`` (SigLIP has no
CLS token: every patch is an image token), ``image_token_index`` = ColonGPT's ``image_token_id``,
``image_seq_length`` = patches per image.

Processor: ``LlavaProcessor`` with ColonGPT's tokenizer, a ``LlavaImageProcessor`` configured as
ColonGPT's preprocessing (pad to square with the mean colour, bicubic resize to ``image_size``,
rescale 1/255, normalise), ``patch_size`` (so ``<image>`` expands to ``image_seq_length`` ids)
and ColonGPT's own ``colongpt`` chat template (``processing.colongpt_chat_template``). Pixels are
bit-identical with transformers' PIL backend; the torchvision backend, which
``AutoProcessor`` prefers when torchvision is installed, resizes with its own bicubic kernel, so
load with ``AutoProcessor.from_pretrained(folder, backend="pil")`` for ColonGPT's exact pixels.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from colonpipe import atomic
from colonpipe.coloninst import IMAGE_TOKEN
from colonpipe.model.modeling import ColonGPTForConditionalGeneration
from colonpipe.model.processing import ColonGPTProcessor
from colonpipe.projector_types import PLAIN_TYPES

logger = logging.getLogger(__name__)

PROJECTOR_ACT = {"mlp2x_gelu": "gelu", "linear": "linear"}  # LLaVA's projector_hidden_act per type


class ExportError(ValueError):
    """The model cannot be written as a stock LLaVA folder; the message says why."""


# --------------------------------------------------------------------------- config
def check_projector(projector_type: str) -> None:
    """Raise :class:`ExportError` unless ``projector_type`` maps onto LLaVA's projector."""
    if projector_type not in PLAIN_TYPES:
        raise ExportError(
            f"projector_type {projector_type!r} has no stock-LLaVA equivalent: a ppc pyramid "
            f"(pooling + shared conv) is not LLaVA's per-patch MLP, so this model needs the colonpipe "
            f"package (AutoModelForImageTextToText after `import colonpipe.model`); only "
            f"{list(PLAIN_TYPES)} export to LLaVA"
        )


def llava_config(config) -> LlavaConfig:
    """The ``LlavaConfig`` equivalent of a ``ColonGPTConfig`` with a per-patch projector."""
    check_projector(config.projector_type)
    text = copy.deepcopy(config.text_config)
    text.architectures = ["PhiForCausalLM"] if text.model_type == "phi" else text.architectures
    return LlavaConfig(
        vision_config=copy.deepcopy(config.vision_config),
        text_config=text,
        image_token_index=config.image_token_id,
        image_seq_length=config.image_seq_length,
        projector_hidden_act=PROJECTOR_ACT[config.projector_type],
        vision_feature_select_strategy="full",
        vision_feature_layer=config.vision_feature_layer,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


# --------------------------------------------------------------------------- weights
def fold_head_bias(head_weight: torch.Tensor, head_bias: torch.Tensor, ln_weight: torch.Tensor,
                   ln_bias: torch.Tensor, *, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', beta')`` with ``W' h' == W h + b`` for every output ``h`` of the final LayerNorm.

    head_weight W (V, d), head_bias b (V,), ln_weight gamma (d,), ln_bias beta (d,). A LayerNorm
    output is ``h = gamma * n + beta`` with ``sum(n) == 0``, so ``u = 1 / gamma`` gives
    ``u . h == u . beta`` for every input: a constant the bias can ride on. ``beta`` is shifted to
    ``beta' = beta + s * gamma`` (s = +-1, the sign of ``u . beta``), so ``c = u . beta'`` has
    ``|c| = |u . beta| + d``, far from 0, and ``W' = W + (b - s W gamma) u^T / c``. Computed in
    float64 from the values as stored in ``dtype`` (``beta'`` is rounded first, so the identity
    holds for the stored tensors).
    """
    gamma = ln_weight.to(dtype).double()
    if bool((gamma == 0).any()):
        raise ExportError("the final LayerNorm has zero weights: the lm_head bias cannot be folded into it")
    u = 1.0 / gamma
    beta = ln_bias.double()
    sign = 1.0 if float(u @ beta) >= 0 else -1.0
    beta_new = (beta + sign * gamma).to(dtype)
    c = float(u @ beta_new.double())
    weight = head_weight.double()
    residual = head_bias.double() - sign * (weight @ gamma)
    return (weight + torch.outer(residual, u) / c).to(dtype), beta_new


def llava_state_dict(model: ColonGPTForConditionalGeneration) -> dict[str, torch.Tensor]:
    """ColonGPT weights renamed (and the head bias folded) for ``LlavaForConditionalGeneration``."""
    config = model.config
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("vision_tower."):
            out["model." + key] = value
        elif key.startswith("language_model.model."):
            out["model.language_model." + key[len("language_model.model."):]] = value
    proj = "multi_modal_projector."
    if config.projector_type == "mlp2x_gelu":
        for part in ("linear_1", "linear_2"):
            for p in ("weight", "bias"):
                out[f"model.{proj}{part}.{p}"] = state[f"{proj}{part}.{p}"]
    else:  # linear: linear_1 is the projector, linear_2 the identity (act is the identity too)
        width, dtype = config.text_config.hidden_size, state[f"{proj}linear.weight"].dtype
        out[f"model.{proj}linear_1.weight"] = state[f"{proj}linear.weight"]
        out[f"model.{proj}linear_1.bias"] = state[f"{proj}linear.bias"]
        out[f"model.{proj}linear_2.weight"] = torch.eye(width, dtype=dtype)
        out[f"model.{proj}linear_2.bias"] = torch.zeros(width, dtype=dtype)
    ln = "model.language_model.final_layernorm."
    head_bias = state.get("language_model.lm_head.bias")
    weight = state["language_model.lm_head.weight"]
    if head_bias is not None and bool(head_bias.any()):
        if config.text_config.tie_word_embeddings:
            raise ExportError("lm_head is tied to the embeddings: folding its bias would change both")
        weight, out[ln + "bias"] = fold_head_bias(weight, head_bias, out[ln + "weight"], out[ln + "bias"],
                                                  dtype=weight.dtype)
    out["lm_head.weight"] = weight
    if head_bias is not None:
        out["lm_head.bias"] = torch.zeros_like(head_bias)  # see the module docstring
    return out


# --------------------------------------------------------------------------- processor
def llava_processor(processor: ColonGPTProcessor, *, patch_size: int) -> LlavaProcessor:
    """A ``LlavaProcessor`` that preprocesses, expands ``<image>`` and templates like ``processor``."""
    size = {"height": processor.image_size, "width": processor.image_size}
    images = LlavaImageProcessorPil(
        do_pad=True, do_resize=True, size=size, resample=3, do_center_crop=False, crop_size=size,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(processor.image_mean),
        image_std=list(processor.image_std), do_convert_rgb=True,
    )
    template = processor.chat_template  # the one colongpt template (processing.colongpt_chat_template)
    return LlavaProcessor(image_processor=images, tokenizer=processor.tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="full", chat_template=template,
                          image_token=IMAGE_TOKEN, num_additional_image_tokens=0)


# --------------------------------------------------------------------------- folder
def export_llava(model: ColonGPTForConditionalGeneration, processor: ColonGPTProcessor, out_dir: Path) -> Path:
    """Write ``model`` + ``processor`` as a LLaVA folder at ``out_dir`` (replaced atomically).

    Raises :class:`ExportError` for a ``ppc_*`` projector, before anything is written.
    """
    out_dir = Path(out_dir)
    config = llava_config(model.config)
    state = llava_state_dict(model)
    patch = config.vision_config.patch_size
    with torch.device("meta"):  # a skeleton: every tensor comes from `state` (assign=True)
        llava = LlavaForConditionalGeneration(config)
    unexpected = {k: state.pop(k) for k in ("lm_head.bias",) if k in state}
    llava.load_state_dict(state, strict=True, assign=True)
    llava.generation_config = copy.deepcopy(model.generation_config)
    with atomic.staged_dir(out_dir) as tmp:
        llava.save_pretrained(tmp, state_dict={**llava.state_dict(), **unexpected})
        llava_processor(processor, patch_size=patch[0] if isinstance(patch, (list, tuple)) else patch
                        ).save_pretrained(tmp)
    logger.info("exported %s (%s projector, %d image tokens) as LLaVA to %s", type(model).__name__,
                model.config.projector_type, config.image_seq_length, out_dir)
    return out_dir
