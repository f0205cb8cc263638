"""``ColonGPTForConditionalGeneration``: SigLIP vision tower + projector + Phi causal LM.

LLaVA-style composition (transformers' ``models/llava``):
- ``vision_tower`` (``SiglipVisionModel``): frozen by default; features are the hidden states of
  layer ``config.vision_feature_layer`` (-2 = penultimate), all patch tokens (SigLIP has no CLS).
- ``multi_modal_projector``: see :mod:`colonpipe.model.projector`.
- ``language_model``: a whole causal LM (``PhiForCausalLM``: ``model.layers.*`` + ``lm_head``), so
  PEFT target names (q_proj, k_proj, v_proj, dense, fc1, fc2) resolve and ``lm_head`` stays separate.
  ``config.lm_head_bias`` False rebuilds Phi's ``lm_head`` without its bias (the upstream recipe).

The prompt carries ``config.image_seq_length`` copies of ``config.image_token_id`` per image (the
processor expands ``<image>``); their embeddings are replaced by the projected image features with
one ``masked_scatter`` over the batch. Left-padded batched generation and the KV cache work as for
any causal LM: ``pixel_values`` is consumed on the prefill step only.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from colonpipe.model.configuration import ColonGPTConfig
from colonpipe.model.projector import build_projector


def drop_lm_head_bias(language_model: PreTrainedModel) -> None:
    """Replace the causal LM's output layer by a bias-free Linear sharing its weight (in place).

    Upstream ColonGPT rebuilds Phi's ``lm_head`` without a bias, so a pretrained Phi's head bias
    is discarded; a head that has no bias is left as it is.
    """
    head = language_model.get_output_embeddings()
    if head.bias is None:
        return
    new = nn.Linear(head.in_features, head.out_features, bias=False, device=head.weight.device,
                    dtype=head.weight.dtype)
    new.weight = head.weight
    language_model.set_output_embeddings(new)


class ColonGPTPreTrainedModel(PreTrainedModel):
    config_class = ColonGPTConfig
    config: ColonGPTConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["SiglipEncoderLayer", "PhiDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class ColonGPTForConditionalGeneration(ColonGPTPreTrainedModel, GenerationMixin):
    """Vision tower + projector + causal LM; ``forward`` returns ``CausalLMOutputWithPast``."""

    def __init__(self, config: ColonGPTConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = build_projector(
            config.projector_type, config.vision_config.hidden_size, config.text_config.hidden_size
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        if not config.lm_head_bias:
            drop_lm_head_bias(self.language_model)
        self.post_init()

    # ----------------------------------------------------------------- embedding plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # ----------------------------------------------------------------- images
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: (B, 3, H, W) normalised -> projected features (B, image_seq_length, d_llm).

        The vision tower runs under ``torch.no_grad()`` when it is frozen (no parameter requires
        grad), in its own dtype; the projector runs with autograd.
        """
        tower = self.vision_tower
        trainable = any(p.requires_grad for p in tower.parameters())
        dtype = next(tower.parameters()).dtype
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            out = tower(pixel_values.to(dtype), output_hidden_states=True, return_dict=True)
            feats = out.hidden_states[self.config.vision_feature_layer]
        proj_dtype = next(self.multi_modal_projector.parameters()).dtype
        return self.multi_modal_projector(feats.to(proj_dtype))

    def _merge_image_features(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Write image_features (B_img, T, d) into the image-token slots of inputs_embeds (B, L, d)."""
        mask = input_ids == self.config.image_token_id
        n_tokens, n_features = int(mask.sum()), image_features.shape[0] * image_features.shape[1]
        if n_tokens != n_features:
            raise ValueError(
                f"image tokens and image features disagree: input_ids hold {n_tokens} image token(s) "
                f"(id {self.config.image_token_id}) but pixel_values gave {image_features.shape[0]} image(s) x "
                f"{image_features.shape[1]} = {n_features} feature(s); expand each <image> to "
                f"{self.config.image_seq_length} ids with ColonGPTProcessor"
            )
        mask = mask.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, image_features.to(inputs_embeds.dtype))

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """input_ids (B, L) with image tokens expanded; attention_mask (B, L); pixel_values
        (B_img, 3, H, W) or None; labels (B, L) with -100 for unsupervised positions (shifted inside).
        """
        kwargs.pop("return_dict", None)  # always a ModelOutput (generate passes return_dict)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if pixel_values is not None:
                image_features = self.get_image_features(pixel_values)
                inputs_embeds = self._merge_image_features(input_ids, inputs_embeds, image_features)
            elif self._is_prefill(past_key_values) and bool((input_ids == self.config.image_token_id).any()):
                raise ValueError("input_ids hold image tokens but no pixel_values were given")
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            return_dict=True,
            **kwargs,
        )
        return CausalLMOutputWithPast(
            loss=out.loss,
            logits=out.logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )

    @staticmethod
    def _is_prefill(past_key_values: Cache | None) -> bool:
        return past_key_values is None or past_key_values.get_seq_length() == 0
