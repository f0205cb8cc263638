"""Base-model presets: build ``models/base`` once, then load it with ONE code path.

- ``tiny``: SigLIP + Phi shrunk to the ``model.tiny`` sizes, random weights (seeded; LM init std
  ``tiny.text_init_std``, vision positions 2-D sin/cos when ``tiny.position_init`` says so), and a
  byte-level BPE tokenizer trained on the instruction corpus. For the CPU demo and the tests.
- ``phi15-siglip``: ``microsoft/phi-1_5`` + ``google/siglip-so400m-patch14-384`` (hub ids or local
  folders in params), loaded with ``from_pretrained`` (never ``trust_remote_code``); the tokenizer
  is Phi's, with ``<image>`` added; image size / mean / std come from the SigLIP side.

  As upstream: Phi's ``lm_head`` is rebuilt without its bias (``lm_head_bias: false``) and the
  projector keeps PyTorch's default initialisation.
- ``colongpt-v1``: the published ColonGPT-v1 (``params.checkpoint``, merged or LoRA), converted by
  :mod:`colonpipe.model.converters.colongpt_v1`.

All are saved by :func:`build_base` as a ``save_pretrained`` folder (config, safetensors weights,
generation config, tokenizer, ``processor_config.json``, ``chat_template.jinja``) and read back by :func:`load_base`.
Both run the loud checks of :mod:`colonpipe.model.checks` (tokenizer, template, patch grid).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
from transformers import PretrainedConfig, SiglipVisionModel

from colonpipe import atomic
from colonpipe.model.configuration import PHI_1_5, SIGLIP_SO400M_384, ColonGPTConfig
from colonpipe.model.checks import check_base, check_tokenizer, check_tokenizer_files
from colonpipe.model.modeling import ColonGPTForConditionalGeneration, drop_lm_head_bias
from colonpipe.model.processing import SYSTEM_PROMPT, ColonGPTProcessor, dialogue_text
from colonpipe.model.projector import build_projector
from colonpipe.model.tokenizer import IMAGE_TOKEN, iter_dialogues, train_bpe_tokenizer
from colonpipe.params import ModelParams

logger = logging.getLogger(__name__)

KNOWN_LLMS = {"microsoft/phi-1_5": PHI_1_5}
KNOWN_VISION = {"google/siglip-so400m-patch14-384": SIGLIP_SO400M_384}
PHI_1_5_IMAGE_TOKEN_ID = 50295  # len(Phi-1.5 tokenizer): the id "<image>" gets when appended
TINY_IMAGE_TOKEN_ID = 1  # see colonpipe.model.tokenizer


# --------------------------------------------------------------------------- configs
def pretrained_config(name: str, known: dict[str, dict], model_type: str, *, vision: bool) -> PretrainedConfig:
    """Config of a hub id or local folder; known hub ids resolve offline from built-in values."""
    if Path(name).is_dir():
        cfg = AutoConfig.from_pretrained(name)
        if vision and hasattr(cfg, "vision_config"):  # a full SigLIP (text + vision) checkpoint
            cfg = cfg.vision_config
        return cfg
    if name in known:
        return AutoConfig.for_model(model_type, **known[name])
    try:
        cfg = AutoConfig.from_pretrained(name)
    except OSError as exc:
        raise ValueError(f"{name}: not a local folder, not a known hub id, and not loadable ({exc})") from None
    return cfg.vision_config if vision and hasattr(cfg, "vision_config") else cfg


def config_for_preset(params: ModelParams, *, image_token_id: int | None = None) -> ColonGPTConfig:
    """The ``ColonGPTConfig`` of a preset, without weights (usable on torch's meta device).

    ``phi15-siglip`` with the default hub ids needs no download. ``image_token_id`` defaults to the
    id the preset's tokenizer gives ``<image>`` (tiny: 1; Phi-1.5: 50295).
    """
    if params.preset == "tiny":
        t = params.tiny
        vision = AutoConfig.for_model(
            "siglip_vision_model", hidden_size=t.vision_hidden, intermediate_size=t.vision_intermediate,
            num_hidden_layers=t.vision_layers, num_attention_heads=t.vision_heads,
            image_size=t.image_size, patch_size=t.patch_size, vision_use_head=False,
        )
        text = AutoConfig.for_model(
            "phi", vocab_size=t.vocab_size, hidden_size=t.text_hidden, intermediate_size=t.text_intermediate,
            num_hidden_layers=t.text_layers, num_attention_heads=t.text_heads,
            max_position_embeddings=t.max_position, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
            initializer_range=t.text_init_std,
        )
        projector, default_id = params.projector_type or t.projector_type, TINY_IMAGE_TOKEN_ID
    else:
        vision = pretrained_config(params.vision, KNOWN_VISION, "siglip_vision_model", vision=True)
        vision.vision_use_head = False  # the pooling head is unused: features are patch tokens
        text = pretrained_config(params.llm, KNOWN_LLMS, "phi", vision=False)
        projector, default_id = params.projector_type or "ppc_14_7_1", PHI_1_5_IMAGE_TOKEN_ID
    return ColonGPTConfig(
        lm_head_bias=params.preset == "tiny",  # tiny keeps its head (demo metrics); the real recipe drops it
        vision_config=vision,
        text_config=text,
        projector_type=projector,
        vision_feature_layer=params.vision_feature_layer,
        image_token_id=default_id if image_token_id is None else image_token_id,
    )


# --------------------------------------------------------------------------- building
def _build_tiny(params: ModelParams, corpus_files: list[Path]):
    texts = [dialogue_text(q, a).replace(IMAGE_TOKEN, "") for q, a in iter_dialogues(corpus_files)]
    if not texts:
        raise ValueError(f"tiny preset: no dialogues in the corpus files {[str(f) for f in corpus_files]}")
    texts.append(SYSTEM_PROMPT)
    logger.info("training the tiny BPE tokenizer on %d dialogues", len(texts) - 1)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=params.tiny.vocab_size, model_max_length=params.tiny.max_position)
    config = config_for_preset(params, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(params.seed)
    model = ColonGPTForConditionalGeneration(config)
    if params.tiny.position_init == "sincos":
        _sincos_positions(model.vision_tower.embeddings.position_embedding.weight)
    processor = ColonGPTProcessor(tokenizer, image_size=params.tiny.image_size, image_seq_length=config.image_seq_length)
    return model, processor


SINCOS_AMPLITUDE = 0.3  # about the patch embeddings' scale: neither content nor position drowns the other


def _sincos_positions(weight: torch.Tensor) -> None:
    """Fill a (grid*grid, dim) position table with 2-D sin/cos of (column, row), in place.

    Random position vectors make "where" a fact the vision tower must first discover (measured:
    a box-regression probe on the demo plateaued for 20 epochs); sin/cos of the patch column
    and row make it linearly readable from the start, as in MAE.
    """
    count, dim = weight.shape
    grid = math.isqrt(count)
    if grid * grid != count or dim % 4:
        raise ValueError(f"sincos positions need a square grid and dim % 4 == 0, got {tuple(weight.shape)}")
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")
    freqs = 1.0 / (100.0 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4)))
    parts = []
    for coord in (cols.flatten(), rows.flatten()):
        angles = coord[:, None] * freqs[None, :]
        parts += [angles.sin(), angles.cos()]
    with torch.no_grad():
        weight.copy_(torch.cat(parts, dim=1).to(weight.dtype) * SINCOS_AMPLITUDE)


def vision_image_settings(vision: str, image_size: int) -> dict:
    """Image size, mean and std for the processor (SigLIP's preprocessor_config.json when local)."""
    settings = {"image_size": image_size, "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5)}
    pre = Path(vision) / "preprocessor_config.json"
    if pre.is_file():
        data = json.loads(pre.read_text())
        settings["image_mean"] = tuple(data.get("image_mean", settings["image_mean"]))
        settings["image_std"] = tuple(data.get("image_std", settings["image_std"]))
    return settings


def load_checked(cls, name: str, config: PretrainedConfig):
    """``cls.from_pretrained(name)``; missing or shape-mismatched weights raise ``ValueError``."""
    model, info = cls.from_pretrained(name, config=config, output_loading_info=True)
    bad = {k: info.get(k) for k in ("missing_keys", "mismatched_keys") if info.get(k)}
    if bad:
        raise ValueError(f"{name}: checkpoint does not fill the {type(model).__name__}: {bad}")
    # Unexpected keys are expected: a full SigLIP checkpoint also holds the text tower and head.
    return model


def _build_pretrained(params: ModelParams):
    check_tokenizer_files(params.llm)
    tokenizer = AutoTokenizer.from_pretrained(params.llm)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    tokenizer.pad_token = tokenizer.eos_token  # Phi-1.5: pad = eos = unk
    config = config_for_preset(params, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    check_tokenizer(tokenizer, params.llm, embedding_rows=config.text_config.vocab_size)
    with torch.device("meta"):  # skeleton only; every part is replaced by real weights below
        model = ColonGPTForConditionalGeneration(config)
    logger.info("loading vision tower %s and LLM %s", params.vision, params.llm)
    model.vision_tower = load_checked(SiglipVisionModel, params.vision, config.vision_config)
    model.language_model = load_checked(AutoModelForCausalLM, params.llm, config.text_config)
    drop_lm_head_bias(model.language_model)  # upstream rebuilds Phi's head without its bias
    torch.manual_seed(params.seed)
    # PyTorch's default initialisation, as upstream builds its projector (no std-0.02 re-init).
    model.multi_modal_projector = build_projector(
        config.projector_type, config.vision_config.hidden_size, config.text_config.hidden_size
    )
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise RuntimeError(f"weights left uninitialised after loading: {meta[:5]}")
    image = vision_image_settings(params.vision, config.vision_config.image_size)
    processor = ColonGPTProcessor(tokenizer, image_seq_length=config.image_seq_length, **image)
    return model, processor


def build_preset(params: ModelParams, *, corpus_files: list[Path], out_dir: Path) -> Path:
    """Build a ``tiny`` or ``phi15-siglip`` base model and processor and save both to ``out_dir``
    (replaced atomically). ``corpus_files``: instruction JSON files the tiny tokenizer is trained on
    (ignored otherwise). The ``base`` stage calls it through :func:`colonpipe.model.base_model.build_base`.
    """
    if params.preset not in ("tiny", "phi15-siglip"):
        raise ValueError(f"build_preset builds tiny and phi15-siglip, not {params.preset!r} (use build_base)")
    model, processor = _build_tiny(params, corpus_files) if params.preset == "tiny" else _build_pretrained(params)
    check_base(model.config, processor, params.llm if params.preset != "tiny" else out_dir)
    return save_base(model, processor, Path(out_dir), save_dtype=params.save_dtype, label=params.preset)


def save_base(model: ColonGPTForConditionalGeneration, processor: ColonGPTProcessor, out_dir: Path, *,
              save_dtype: str, label: str) -> Path:
    """Save ``model`` (cast to ``save_dtype``) and ``processor`` as one folder, replacing ``out_dir``
    atomically; the generation config gets the processor's eos/pad/bos ids."""
    model = model.to(getattr(torch, save_dtype))
    gen = model.generation_config
    gen.eos_token_id = gen.pad_token_id = processor.eos_token_id
    gen.bos_token_id = processor.tokenizer.bos_token_id
    with atomic.staged_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    n = sum(p.numel() for p in model.parameters())
    logger.info("saved %s base model (%.2fM params, %d image tokens) to %s", label, n / 1e6,
                model.config.image_seq_length, out_dir)
    return out_dir


# --------------------------------------------------------------------------- loading
def default_attn_implementation(dtype: torch.dtype | None) -> str:
    """flash_attention_2 on a CUDA GPU with flash-attn installed and a 16-bit dtype, else sdpa."""
    if (
        torch.cuda.is_available()
        and importlib.util.find_spec("flash_attn") is not None
        and dtype in (torch.float16, torch.bfloat16)
    ):
        return "flash_attention_2"
    return "sdpa"


def load_base(
    path: str | Path, *, dtype: torch.dtype | None = None, attn_implementation: str | None = None
) -> tuple[ColonGPTForConditionalGeneration, ColonGPTProcessor]:
    """Load a folder written by :func:`build_base` (or any saved ColonGPT) -> (model on CPU, processor).

    ``dtype`` None keeps the saved dtype; ``attn_implementation`` None picks
    :func:`default_attn_implementation`. Missing or unexpected weights raise ``ValueError``.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a saved ColonGPT model (no config.json)")
    check_tokenizer_files(path)
    attn = attn_implementation or default_attn_implementation(dtype)
    model, info = AutoModelForImageTextToText.from_pretrained(
        path, dtype=dtype if dtype is not None else "auto", attn_implementation=attn, output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise ValueError(f"{path}: weights do not match the config: {bad}")
    processor = ColonGPTProcessor.from_pretrained(path)
    cfg = model.config
    if (processor.image_seq_length, processor.image_token_id) != (cfg.image_seq_length, cfg.image_token_id):
        raise ValueError(
            f"{path}: processor expands <image> to {processor.image_seq_length} x id {processor.image_token_id} "
            f"but the model expects {cfg.image_seq_length} x id {cfg.image_token_id}"
        )
    check_base(cfg, processor, path)
    logger.info("loaded %s (%s, attention=%s)", path, model.dtype, attn)
    return model, processor
