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
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from colonpipe import atomic
from colonpipe.model.tokenizer import IMAGE_TOKEN

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
PROCESSOR_FILE = "colongpt_processor.json"
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


class ColonGPTProcessor:
    """Tokenizer + image settings of one ColonGPT model (see the module docstring for the template)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        image_size: int,
        image_seq_length: int,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        system_prompt: str = SYSTEM_PROMPT,
    ):
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no eos token")
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if image_id is None or image_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {IMAGE_TOKEN!r} token; add it as a special token")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # Phi-1.5 convention: pad == eos
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.image_seq_length = int(image_seq_length)
        self.image_mean = tuple(float(x) for x in image_mean)
        self.image_std = tuple(float(x) for x in image_std)
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
        return pixel_values(images, self.image_size, self.image_mean, self.image_std)

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
        prompts = [self.prompt_ids(q) for q in questions]
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, length - len(p) :] = torch.tensor(p)
            mask[i, length - len(p) :] = 1
        return {"input_ids": ids, "attention_mask": mask, "pixel_values": self.preprocess_images(images)}

    def __call__(
        self,
        questions: Sequence[str],
        images: Sequence[Image.Image],
        answers: Sequence[str] | None = None,
        *,
        max_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """With ``answers``: :meth:`training_batch`; without: :meth:`generation_batch`."""
        if answers is None:
            return self.generation_batch(questions, images)
        return self.training_batch(questions, answers, images, max_length=max_length)

    def decode_generated(self, new_tokens: torch.Tensor) -> list[str]:
        """new_tokens (B, N): the ids generated after the prompt -> answers cut at the first eos, stripped."""
        out = []
        for row in new_tokens.tolist():
            if self.eos_token_id in row:
                row = row[: row.index(self.eos_token_id)]
            out.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return out

    # ----------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "image_size": self.image_size,
            "image_seq_length": self.image_seq_length,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "system_prompt": self.system_prompt,
        }

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write the tokenizer files and ``colongpt_processor.json`` (atomically) into the folder."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        _atomic_write_json(save_directory / PROCESSOR_FILE, self.to_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ColonGPTProcessor":
        """Load from a folder written by :meth:`save_pretrained`."""
        path = Path(path)
        try:
            cfg = json.loads((path / PROCESSOR_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path / PROCESSOR_FILE}: cannot read processor settings ({exc})") from None
        cfg.pop("processor_class", None)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(tokenizer, **cfg)


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


def _atomic_write_json(path: Path, data: dict) -> None:
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")
