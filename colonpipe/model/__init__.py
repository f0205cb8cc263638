"""ColonGPT model package; importing it registers ``colongpt`` with the transformers Auto classes.

After ``import colonpipe.model``, ``AutoConfig.from_pretrained(dir)``,
``AutoModelForImageTextToText.from_pretrained(dir)``, ``AutoProcessor.from_pretrained(dir)`` and
``AutoImageProcessor.from_pretrained(dir)`` load a saved ColonGPT with no ``trust_remote_code``.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

from colonpipe.model.configuration import ColonGPTConfig
from colonpipe.model.modeling import ColonGPTForConditionalGeneration, ColonGPTPreTrainedModel
from colonpipe.model.processing import (
    SYSTEM_PROMPT,
    ColonGPTImageProcessor,
    ColonGPTProcessor,
    EncodedExample,
    PromptTooLongError,
)
from colonpipe.model.projector import build_projector
from colonpipe.projector_types import num_image_tokens, pyramid_levels

AutoConfig.register(ColonGPTConfig.model_type, ColonGPTConfig, exist_ok=True)
AutoModelForImageTextToText.register(ColonGPTConfig, ColonGPTForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(ColonGPTConfig, image_processor_classes={"pil": ColonGPTImageProcessor}, exist_ok=True)
AutoProcessor.register(ColonGPTConfig, ColonGPTProcessor, exist_ok=True)

from colonpipe.model.base_model import build_base  # noqa: E402 (after registration)
from colonpipe.model.presets import config_for_preset, load_base  # noqa: E402

__all__ = [
    "SYSTEM_PROMPT",
    "ColonGPTConfig",
    "ColonGPTImageProcessor",
    "ColonGPTProcessor",
    "EncodedExample",
    "PromptTooLongError",
    "build_base",
    "config_for_preset",
    "load_base",
    "ColonGPTForConditionalGeneration",
    "ColonGPTPreTrainedModel",
    "build_projector",
    "num_image_tokens",
    "pyramid_levels",
]
