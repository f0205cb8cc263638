"""``ColonGPTConfig``: the composite config (SigLIP vision + projector + Phi causal LM).

Follows transformers 5 composite configs (``LlavaConfig``): ``vision_config`` and
``text_config`` are sub-configs resolved through ``AutoConfig`` (defaults: SigLIP so400m-384
and Phi-1.5). ``image_seq_length`` is derived from ``projector_type`` and the vision patch grid
and checked when given (a saved config records it for readers).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from colonpipe.projector_types import num_image_tokens

# SigLIP so400m-patch14-384, vision half (the public config.json values).
SIGLIP_SO400M_384 = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 14,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}
# microsoft/phi-1_5 (the public config.json values).
PHI_1_5 = {
    "vocab_size": 51200,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 24,
    "num_attention_heads": 32,
    "max_position_embeddings": 2048,
    "partial_rotary_factor": 0.5,
    "hidden_act": "gelu_new",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "tie_word_embeddings": False,
}


def patch_grid(vision_config: PretrainedConfig) -> int:
    """Side of the square patch grid of a ViT config (27 for SigLIP-384/14)."""
    size, patch = vision_config.image_size, vision_config.patch_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    return size // patch  # a stride-`patch` conv drops the remainder (384 // 14 = 27)


@strict
class ColonGPTConfig(PretrainedConfig):
    """Composite ColonGPT config.

    Fields: ``vision_config`` (SigLIP vision), ``text_config`` (Phi), ``projector_type``
    (``ppc_14_7_1``-style, ``mlp2x_gelu`` or ``linear``), ``vision_feature_layer`` (hidden-state
    index, -2 = penultimate), ``image_token_id`` (the placeholder id, one per image token),
    ``image_seq_length`` (derived: 246 for ppc_14_7_1 on 27x27, 729 for per-patch types),
    ``lm_head_bias`` (False: the LM's output layer is rebuilt without a bias, as ColonGPT does
    upstream for Phi; True keeps the LM's own head, as the tiny demo preset does).
    """

    model_type = "colongpt"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="siglip_vision_model", init_kwargs=dict(SIGLIP_SO400M_384)
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="phi", init_kwargs=dict(PHI_1_5)),
    }

    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    projector_type: str = "ppc_14_7_1"
    vision_feature_layer: int = -2
    image_token_id: int = 50295
    image_seq_length: int | None = None
    lm_head_bias: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        derived = num_image_tokens(self.projector_type, patch_grid(self.vision_config))
        if self.image_seq_length is not None and self.image_seq_length != derived:
            raise ValueError(
                f"image_seq_length={self.image_seq_length} disagrees with projector_type "
                f"{self.projector_type!r} on a {patch_grid(self.vision_config)}-patch grid ({derived} tokens)"
            )
        self.image_seq_length = derived
        vocab = self.text_config.vocab_size
        if not 0 <= self.image_token_id < vocab:
            raise ValueError(f"image_token_id {self.image_token_id} is outside the LLM vocabulary (0..{vocab - 1})")

    @property
    def grid(self) -> int:
        """Side of the vision patch grid."""
        return patch_grid(self.vision_config)
