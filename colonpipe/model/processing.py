"""``ColonGPTProcessor``: images -> ``pixel_values``, dialogues -> token ids, labels and masks.

The ``colongpt`` template (spec section 3)::

    "<system> USER: <image>\\n{question} ASSISTANT: {answer}<|endoftext|>"

- ``<image>`` is expanded to ``image_seq_length`` copies of the image-token id, so the model fills
  them with one ``masked_scatter``.
- Tokenisation is done piece by piece and the ids are concatenated:
  ``"<system> USER: " + <text before <image>>`` | image ids | ``"<text after <image>> ASSISTANT:"`` |
  ``" {answer}"`` | eos. The prompt ids are therefore identical at training and inference time,
  whatever the answer (a BPE merge can never straddle the prompt/answer boundary).
- Training labels: -100 everywhere except the answer tokens and the closing eos. pad == eos, so
  padding is marked by ``attention_mask == 0`` (and labels -100), never by token value; the real
  closing eos stays inside the attention mask and the loss.
- Training batches are right-padded; generation prompts end at ``ASSISTANT:`` and are left-padded.
- The same format is the processor's chat template (:func:`colongpt_chat_template`, saved as
  ``chat_template.jinja``): ``apply_chat_template(..., tokenize=True)`` gives exactly the ids of
  :meth:`ColonGPTProcessor.prompt_ids` (generation prompt) and of
  :meth:`ColonGPTProcessor.encode_training` (with the assistant turn), because the tokenizer splits
  at the special tokens ``<image>`` / eos and the pre-tokenizer splits ``ASSISTANT:`` from
  ``" {answer}"`` (checked token for token in ``tests/model/test_model_processing.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BaseImageProcessor, BatchFeature, PreTrainedTokenizerBase, ProcessorMixin
from transformers.utils import PROCESSOR_NAME

from colonpipe.coloninst import IMAGE_TOKEN, SYSTEM_PROMPT

logger = logging.getLogger(__name__)

LEGACY_PROCESSOR_FILE = "colongpt_processor.json"  # written before the processor was a ProcessorMixin
IGNORE_INDEX = -100


def dialogue_text(question: str, answer: str, *, system_prompt: str = SYSTEM_PROMPT) -> str:
    """The full ``colongpt`` dialogue as text (``<image>`` left in place), e.g. for tokenizer training."""
    return f"{system_prompt} USER: {question} ASSISTANT: {answer}"


class PromptTooLongError(ValueError):
    """The prompt (with its image tokens) leaves no room for an answer within ``max_length``."""


@dataclass(frozen=True)
class EncodedExample:
    """One tokenised dialogue: ``input_ids`` and ``labels`` have the same length."""

    input_ids: list[int]
    labels: list[int]


def colongpt_chat_template(system_prompt: str, eos_token: str) -> str:
    """The ``colongpt`` conversation as a Jinja chat template (LLaVA / Vicuna-v1 separators).

    One user turn with an image renders ``"<system> USER: <image>\\n{text} ASSISTANT:"`` with
    ``add_generation_prompt``, and an assistant turn ``"ASSISTANT: {answer}<eos>"``: the text
    ColonGPT trains and generates on (tokenised, it gives :meth:`ColonGPTProcessor.prompt_ids` /
    :meth:`ColonGPTProcessor.encode_training` token for token). A leading ``system`` message
    replaces the system prompt. Content is a string or a list of ``{"type": "image"}`` /
    ``{"type": "text", "text": ...}`` parts.
    """
    def literal(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return (
        "{%- set ns = namespace(system=" + literal(system_prompt) + ") -%}"
        "{%- for m in messages if m['role'] == 'system' -%}"
        "{%- set ns.system = m['content'] if m['content'] is string else m['content'][0]['text'] -%}"
        "{%- endfor -%}"
        "{{- ns.system + ' ' -}}"
        "{%- for m in messages if m['role'] != 'system' -%}"
        "{{- 'USER: ' if m['role'] == 'user' else 'ASSISTANT: ' -}}"
        "{%- if m['content'] is string -%}{{- m['content'] -}}"
        "{%- else -%}{%- for c in m['content'] -%}"
        "{%- if c['type'] == 'image' -%}{{- '" + IMAGE_TOKEN + "\\n' -}}"
        "{%- elif c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- ' ' if m['role'] == 'user' else " + literal(eos_token) + " -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
    )


class ColonGPTImageProcessor(BaseImageProcessor):
    """PIL images -> ``pixel_values`` (B, 3, S, S) float32: pad to a square with the mean colour,
    bicubic resize to ``image_size``, rescale to 0..1, normalise (see :func:`pixel_values`).

    Saved inside ``processor_config.json`` by the processor; registered for
    ``AutoImageProcessor`` (``colongpt``) by ``import colonpipe.model``.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int = 384, image_mean: Sequence[float] = (0.5, 0.5, 0.5),
                 image_std: Sequence[float] = (0.5, 0.5, 0.5), **kwargs):
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.image_mean = [float(x) for x in image_mean]
        self.image_std = [float(x) for x in image_std]

    def __call__(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """One image, a list of images, or a list of per-sample lists -> ``{"pixel_values"}``."""
        return BatchFeature({"pixel_values": pixel_values(_flat_images(images), self.image_size,
                                                          self.image_mean, self.image_std)})


def _flat_images(images) -> list[Image.Image]:
    """None, one image, or nested lists of images -> a flat list (in order)."""
    if images is None:
        return []
    if isinstance(images, Image.Image):
        return [images]
    return [im for item in images for im in _flat_images(item)]


class ColonGPTProcessor(ProcessorMixin):
    """Tokenizer + :class:`ColonGPTImageProcessor` of one ColonGPT model (template: module docstring).

    A transformers ``ProcessorMixin``: ``save_pretrained`` writes the tokenizer files,
    ``processor_config.json`` (image settings, ``image_seq_length``, ``system_prompt``) and
    ``chat_template.jinja``; ``AutoProcessor.from_pretrained`` (after ``import colonpipe.model``)
    and :meth:`from_pretrained` load it. ``ColonGPTProcessor(tokenizer, image_size=...,
    image_seq_length=...)`` builds the image processor from the image settings.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None = None,
        image_processor: ColonGPTImageProcessor | None = None,
        image_seq_length: int | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        chat_template: str | None = None,
        image_size: int | None = None,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
    ):
        if tokenizer is None or image_seq_length is None:
            raise ValueError("ColonGPTProcessor needs a tokenizer and image_seq_length")
        if image_processor is None:
            if image_size is None:
                raise ValueError("ColonGPTProcessor needs an image_processor or image_size")
            image_processor = ColonGPTImageProcessor(image_size=image_size, image_mean=image_mean, image_std=image_std)
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no eos token")
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if image_id is None or image_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {IMAGE_TOKEN!r} token; add it as a special token")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # Phi-1.5 convention: pad == eos
        super().__init__(tokenizer, image_processor,
                         chat_template=chat_template or colongpt_chat_template(system_prompt, tokenizer.eos_token))
        self.image_seq_length = int(image_seq_length)
        self.system_prompt = system_prompt
        self.image_token_id = int(image_id)
        self._head_ids = self._ids(f"{system_prompt} USER: ")

    # ----------------------------------------------------------------- ids
    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    # ----------------------------------------------------------------- images
    @property
    def image_size(self) -> int:
        return self.image_processor.image_size

    @property
    def image_mean(self) -> tuple[float, ...]:
        return tuple(self.image_processor.image_mean)

    @property
    def image_std(self) -> tuple[float, ...]:
        return tuple(self.image_processor.image_std)

    @property
    def pad_color(self) -> tuple[int, int, int]:
        """The processor mean as 8-bit RGB (0.5 -> 127), used to pad images to a square."""
        return mean_fill(self.image_mean)

    def pad_to_square(self, image: Image.Image) -> Image.Image:
        """``image`` centred on a square of ``pad_color`` (see :func:`pad_to_square`)."""
        return pad_to_square(image, self.pad_color)

    def fit_image(self, image: Image.Image) -> Image.Image:
        """``image`` padded to a square and resized to ``image_size`` (see :func:`fit_image`)."""
        return fit_image(image, self.image_size, self.pad_color)

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> pixel_values (B, 3, image_size, image_size) float32: pad, resize, normalise."""
        return self.image_processor(list(images))["pixel_values"]

    # ----------------------------------------------------------------- text
    def prompt_ids(self, question: str) -> list[int]:
        """Ids of ``"<system> USER: {question} ASSISTANT:"`` with ``<image>`` expanded.

        ``question`` is the human turn and must hold exactly one ``<image>`` (ColonINST turns
        start with ``"<image>\\n"``).
        """
        if question.count(IMAGE_TOKEN) != 1:
            raise ValueError(f"question must hold exactly one {IMAGE_TOKEN!r}, got {question!r}")
        before, after = question.split(IMAGE_TOKEN)
        return (
            self._head_ids
            + self._ids(before)
            + [self.image_token_id] * self.image_seq_length
            + self._ids(f"{after} ASSISTANT:")
        )

    def encode_training(self, question: str, answer: str, *, max_length: int | None = None) -> EncodedExample:
        """Prompt + ``" {answer}"`` + eos; labels supervise only the answer and the eos.

        If the whole exceeds ``max_length`` the answer is cut (with a warning); if not even one
        answer token fits after the prompt, ``PromptTooLongError`` is raised (the image tokens are
        never cut).
        """
        prompt = self.prompt_ids(question)
        target = self._ids(f" {answer}") + [self.eos_token_id]
        if max_length is not None and len(prompt) + len(target) > max_length:
            room = max_length - len(prompt)
            if room < 1:
                raise PromptTooLongError(
                    f"prompt is {len(prompt)} tokens ({self.image_seq_length} image tokens) but "
                    f"max_length is {max_length}: no room for the answer to {question[:60]!r}"
                )
            logger.warning("answer cut from %d to %d tokens to fit max_length=%d", len(target), room, max_length)
            target = target[:room]
        return EncodedExample(prompt + target, [IGNORE_INDEX] * len(prompt) + target)

    # ----------------------------------------------------------------- batches
    def collate_training(self, examples: Sequence[EncodedExample]) -> dict[str, torch.Tensor]:
        """Right-pad examples -> input_ids, attention_mask, labels, each (B, L_max) int64."""
        length = max(len(e.input_ids) for e in examples)
        ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        for i, ex in enumerate(examples):
            n = len(ex.input_ids)
            ids[i, :n] = torch.tensor(ex.input_ids)
            mask[i, :n] = 1
            labels[i, :n] = torch.tensor(ex.labels)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def training_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        images: Sequence[Image.Image],
        *,
        max_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """A supervised batch: input_ids/attention_mask/labels (B, L) right-padded, pixel_values (B, 3, S, S)."""
        if not len(questions) == len(answers) == len(images):
            raise ValueError(f"got {len(questions)} questions, {len(answers)} answers, {len(images)} images")
        examples = [self.encode_training(q, a, max_length=max_length) for q, a in zip(questions, answers)]
        return {**self.collate_training(examples), "pixel_values": self.preprocess_images(images)}

    def generation_batch(self, questions: Sequence[str], images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Prompts ending at ``ASSISTANT:``, LEFT-padded: input_ids, attention_mask (B, L), pixel_values."""
        if len(questions) != len(images):
            raise ValueError(f"got {len(questions)} questions but {len(images)} images")
        return {**self._left_padded([self.prompt_ids(q) for q in questions]),
                "pixel_values": self.preprocess_images(images)}

    def __call__(self, images=None, text: str | Sequence[str] | None = None, *, return_tensors: str | None = "pt",
                 **kwargs) -> BatchFeature:
        """HF-style call: rendered prompts (e.g. from :meth:`apply_chat_template`) + images -> a
        LEFT-padded generation batch ``input_ids``, ``attention_mask`` (B, L), ``pixel_values``.

        Each ``<image>`` in ``text`` is expanded to ``image_seq_length`` image-token ids; the text
        around it is tokenised as the tokenizer splits it (no special tokens added), which for a
        chat-template prompt is exactly :meth:`prompt_ids`. The number of images must equal the
        number of ``<image>`` placeholders. Other keyword arguments are accepted and ignored (the
        ones ``apply_chat_template`` forwards).
        """
        texts = [text] if isinstance(text, str) else list(text or [])
        flat = _flat_images(images)
        if sum(t.count(IMAGE_TOKEN) for t in texts) != len(flat):
            raise ValueError(f"{len(flat)} images for {sum(t.count(IMAGE_TOKEN) for t in texts)} "
                             f"{IMAGE_TOKEN!r} placeholders in the text")
        rows = []
        for t in texts:
            ids: list[int] = []
            for tok in self._ids(t):
                ids.extend([tok] * self.image_seq_length if tok == self.image_token_id else [tok])
            rows.append(ids)
        out = self._left_padded(rows) if rows else {}
        if flat:
            out["pixel_values"] = self.preprocess_images(flat)
        return BatchFeature(out)

    def _left_padded(self, rows: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, length - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, length - len(r):] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def decode_generated(self, new_tokens: torch.Tensor) -> list[str]:
        """new_tokens (B, N): the ids generated after the prompt -> answers cut at the first eos, stripped."""
        out = []
        for row in new_tokens.tolist():
            if self.eos_token_id in row:
                row = row[: row.index(self.eos_token_id)]
            out.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return out

    # ----------------------------------------------------------------- persistence
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "ColonGPTProcessor":
        """Load a folder written by :meth:`save_pretrained` (``processor_config.json``), or one
        written by colonpipe before the processor was a ``ProcessorMixin``
        (``colongpt_processor.json``: converted on load). ``ValueError`` names the bad file."""
        path = Path(path)
        if (path / PROCESSOR_NAME).is_file():
            try:
                json.loads((path / PROCESSOR_NAME).read_text())
                return super().from_pretrained(str(path), **kwargs)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{path / PROCESSOR_NAME}: cannot load the processor ({exc})") from None
        try:
            cfg = json.loads((path / LEGACY_PROCESSOR_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: no {PROCESSOR_NAME}, and cannot read "
                             f"{LEGACY_PROCESSOR_FILE} ({exc})") from None
        cfg.pop("processor_class", None)
        return cls(AutoTokenizer.from_pretrained(path), **cfg)


# --------------------------------------------------------------------------- images
# The longest side a padding canvas may have: at most 4096 x 4096 RGB (64 MiB as PIL stores it).
# Padding to the raw long side would cost side**2 * 4 bytes whatever the image holds: a 1 x 60000
# strip (a PNG of ~100 bytes) would need a 13 GiB canvas.
MAX_CANVAS_SIDE = 4096


def mean_fill(mean: Sequence[float]) -> tuple[int, int, int]:
    """A 0..1 channel mean as the 8-bit RGB colour images are padded with (0.5 -> 127)."""
    return tuple(int(m * 255) for m in mean)


def pad_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """RGB ``image`` centred on a square canvas of its longer side filled with ``fill``.

    An image whose longer side exceeds ``MAX_CANVAS_SIDE`` is first downscaled (bicubic, aspect
    ratio kept, each side at least 1 pixel) so that side is ``MAX_CANVAS_SIDE``: the canvas, and
    so the memory per image, stays bounded whatever the aspect ratio. Smaller images are padded
    exactly as before (same pixels). A square RGB image is returned as it is.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    if max(w, h) > MAX_CANVAS_SIDE:
        scale = MAX_CANVAS_SIDE / max(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def fit_image(image: Image.Image, size: int, fill: tuple[int, int, int]) -> Image.Image:
    """``image`` padded to a square (``pad_to_square``) and resized (bicubic) to ``size`` x ``size`` RGB.

    Fitting an already fitted image changes nothing, so a caller may fit images as they are
    decoded and keep only the small results.
    """
    return pad_to_square(image, fill).resize((size, size), Image.BICUBIC)


def pixel_values(images: Sequence[Image.Image], size: int, mean: Sequence[float],
                 std: Sequence[float]) -> torch.Tensor:
    """PIL images -> (B, 3, size, size) float32: fit (pad with the mean colour, resize), normalise."""
    fill = mean_fill(mean)
    mean_ = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_ = np.asarray(std, dtype=np.float32)[:, None, None]
    out = []
    for image in images:
        arr = np.asarray(fit_image(image, size, fill), dtype=np.float32).transpose(2, 0, 1) / 255.0
        out.append((arr - mean_) / std_)
    return torch.from_numpy(np.stack(out)) if out else torch.empty(0, 3, size, size)
