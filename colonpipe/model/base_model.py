"""The ``base`` stage's model: a built preset or a converted published checkpoint."""

from __future__ import annotations

from pathlib import Path

from colonpipe.model.converters.colongpt_v1 import convert_colongpt_v1
from colonpipe.model.presets import build_preset
from colonpipe.params import ModelParams


def build_base(params: ModelParams, *, corpus_files: list[Path], out_dir: Path) -> Path:
    """Save the base model of ``params.preset`` to ``out_dir`` (replaced atomically) and return it.

    ``tiny`` / ``phi15-siglip``: built from config (:func:`colonpipe.model.presets.build_preset`;
    the tiny tokenizer is trained on ``corpus_files``). ``colongpt-v1``: the published checkpoint
    ``params.checkpoint`` converted once (:mod:`colonpipe.model.converters.colongpt_v1`).
    """
    if params.preset == "colongpt-v1":
        return convert_colongpt_v1(params.checkpoint, out_dir, llm=params.llm, vision=params.vision,
                                   save_dtype=params.save_dtype)
    return build_preset(params, corpus_files=corpus_files, out_dir=out_dir)
