"""A tiny byte-level BPE tokenizer for the ``tiny`` preset, trained on the instruction corpus.

Contract:
- Special tokens: ``<|endoftext|>`` (id 0; it is eos = pad = unk = bos, as in Phi-1.5) and
  ``<image>`` (id 1, the image placeholder).
- Digits are split one per token before BPE, so box text ``{<123><95><242><195>}`` tokenises as
  ``{<`` ``1`` ``2`` ``3`` ``><`` ... and a small model can learn to emit any coordinate.
- Deterministic: the same texts (in the same order) and vocab size give the same vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from colonpipe.coloninst import EOS_TOKEN, IMAGE_TOKEN, ColonINSTError, dialogue, read_records

logger = logging.getLogger(__name__)



def iter_dialogues(files: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """(question, answer) of every record in the given instruction JSON files, in file order.

    Raises ``ValueError`` naming the file (and the record) when it is not a JSON list of
    ColonINST records (``colonpipe.coloninst.read_records`` / ``dialogue``).
    """
    for path in files:
        for i, record in enumerate(read_records(path)):
            try:
                _, question, answer = dialogue(record)
            except ColonINSTError as exc:
                raise ValueError(f"{path}: record {i}: {exc}") from None
            yield question, answer


def train_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int, model_max_length: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; returns a fast tokenizer with eos=pad=unk=bos=``<|endoftext|>``."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, IMAGE_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is encodable
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    logger.info("trained byte-level BPE: %d tokens", tok.get_vocab_size())
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        extra_special_tokens=[IMAGE_TOKEN],
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
