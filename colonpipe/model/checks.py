"""Loud checks on every base-model load: a model that passes them can encode the ColonGPT template.

A folder written by ``model.save_pretrained`` alone has no tokenizer files, and transformers
then hands back an *empty* tokenizer: every prompt encodes to zero text tokens and training runs
to the end on garbage. These checks make that, and its relatives, a ``BaseModelError`` that names
the folder and the fix:

- :func:`check_tokenizer_files`: a local LLM folder holds tokenizer files (before loading);
- :func:`check_tokenizer`: the tokenizer has a vocabulary, fits the embedding rows, and its
  EOS / pad ids are what the template needs (``<|endoftext|>``, pad == eos, inside the vocabulary);
- :func:`check_template`: the system prompt and ``ASSISTANT:`` encode to non-empty ids that
  decode back to the same text;
- :func:`check_vision`: the vision config gives the square patch grid the projector expects.

:func:`check_base` runs the last three on a built or loaded (config, processor) pair.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from colonpipe.model.configuration import ColonGPTConfig, patch_grid
from colonpipe.projector_types import num_image_tokens, pyramid_levels
from colonpipe.model.tokenizer import EOS_TOKEN, IMAGE_TOKEN

# Any one of these makes a folder loadable by AutoTokenizer (fast, BPE, sentencepiece).
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
MIN_VOCAB = 3  # eos + <image> + at least one text token


class BaseModelError(ValueError):
    """A base model cannot serve the ColonGPT template; the message names the folder and the fix."""


def check_tokenizer_files(folder: str | Path) -> None:
    """A local LLM ``folder`` must hold tokenizer files; a hub id (not a folder) is not checked here."""
    folder = Path(folder)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise BaseModelError(
            f"tokenizer files missing in {folder} (none of {', '.join(TOKENIZER_FILES)}): save the "
            f"tokenizer next to the weights with tokenizer.save_pretrained({str(folder)!r})"
        )


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | Path, *, embedding_rows: int) -> None:
    """Vocabulary present, ``len(tokenizer) <= embedding_rows``, eos = pad = ``<|endoftext|>``."""
    size = len(tokenizer)
    if size < MIN_VOCAB or not tokenizer("ASSISTANT:", add_special_tokens=False)["input_ids"]:
        raise BaseModelError(
            f"tokenizer in {folder} has no vocabulary ({size} token(s)): its files are missing or empty; "
            f"save the LLM's tokenizer with tokenizer.save_pretrained({str(folder)!r})"
        )
    if size > embedding_rows:
        raise BaseModelError(
            f"tokenizer in {folder} has {size} tokens but the LM has only {embedding_rows} embedding rows: "
            "use the tokenizer the LM was trained with, or resize the embeddings before saving"
        )
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None or tokenizer.eos_token != EOS_TOKEN:
        raise BaseModelError(
            f"tokenizer in {folder}: eos token is {tokenizer.eos_token!r} (id {eos}), the colongpt template "
            f"ends every answer with {EOS_TOKEN!r}: set tokenizer.eos_token = {EOS_TOKEN!r} and save it again"
        )
    if pad != eos:
        raise BaseModelError(
            f"tokenizer in {folder}: pad id {pad} differs from eos id {eos}; the template needs pad == eos "
            f"(Phi-1.5): set tokenizer.pad_token = tokenizer.eos_token and save it again"
        )
    if not 0 <= eos < embedding_rows:
        raise BaseModelError(f"tokenizer in {folder}: eos id {eos} is outside the {embedding_rows} embedding rows")


def check_template(processor, folder: str | Path) -> None:
    """System prompt and ``ASSISTANT:`` encode to non-empty ids that decode back to the same text."""
    tok = processor.tokenizer
    for text in (processor.system_prompt, "ASSISTANT:"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        back = tok.decode(ids).strip() if ids else ""
        if not ids or back != text.strip():
            raise BaseModelError(
                f"tokenizer in {folder} does not round-trip the colongpt template: {text[:40]!r} -> "
                f"{len(ids)} id(s) -> {back[:40]!r}; use the LLM's own tokenizer files (tokenizer.save_pretrained)"
            )
    if processor.image_token_id >= len(tok) or tok.convert_ids_to_tokens(processor.image_token_id) != IMAGE_TOKEN:
        raise BaseModelError(f"tokenizer in {folder}: {IMAGE_TOKEN!r} is not id {processor.image_token_id}; "
                             f"add it as a special token and save the tokenizer again")


def check_vision(config: ColonGPTConfig, processor, folder: str | Path) -> None:
    """The vision config's patch grid fits the projector, and the processor agrees with the config."""
    vision = config.vision_config
    size = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    grid = patch_grid(vision)
    levels = pyramid_levels(config.projector_type)
    if grid < 1 or (levels is not None and levels[0] > grid):
        raise BaseModelError(
            f"{folder}: vision config gives a {grid}x{grid} patch grid (image_size {size}, patch_size "
            f"{vision.patch_size}), too small for projector {config.projector_type!r}: pick a projector whose "
            "largest level fits the grid, or a vision tower with a finer grid"
        )
    tokens = num_image_tokens(config.projector_type, grid)
    if processor.image_size != size or processor.image_seq_length != tokens:
        raise BaseModelError(
            f"{folder}: processor resizes to {processor.image_size} px and expands <image> to "
            f"{processor.image_seq_length} ids, but the vision config takes {size} px and the projector "
            f"emits {tokens} tokens: rebuild the base model (stage base) so both come from one config"
        )


def check_base(config: ColonGPTConfig, processor, folder: str | Path) -> None:
    """Every check of a (config, processor) pair; raises ``BaseModelError`` on the first problem."""
    check_tokenizer(processor.tokenizer, folder, embedding_rows=config.text_config.vocab_size)
    check_template(processor, folder)
    check_vision(config, processor, folder)
