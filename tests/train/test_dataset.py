"""Training data: a decompression bomb is a skipped and reported record, whether it is found when
the dataset is built (header check) or only when a record is loaded (file replaced since)."""

from __future__ import annotations

import pytest

from colonpipe.data.images import ImageResolver
from colonpipe.model.processing import ColonGPTProcessor
from colonpipe.train.dataset import load_dataset, usable_records
from tests.bombs import WARNING_SIDE, write_bomb
from trainutil import make_records

REFUSED = "decompression bomb refused before decoding"
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def test_bombs_are_skipped_and_reported_when_the_records_are_read(tmp_path):
    data = make_records(tmp_path, 6, bad={1: "bomb"})
    write_bomb(tmp_path / "images/Synth/2.png", WARNING_SIDE)  # PIL alone would only warn
    records, skipped = usable_records(data, ImageResolver(root=tmp_path / "images"))
    assert [r.index for r in records] == [0, 3, 4, 5]
    assert [(s["index"], s["id"]) for s in skipped] == [(1, "Synth/1.png"), (2, "Synth/2.png")]
    assert all(REFUSED in s["reason"] and "Synth/" in s["reason"] for s in skipped)


def test_a_bomb_met_at_load_time_is_replaced_by_the_next_record_and_reported(tmp_path, tiny_base):
    data = make_records(tmp_path, 4)
    dataset = load_dataset(data, tmp_path / "images", ColonGPTProcessor.from_pretrained(tiny_base), max_length=128)
    want = dataset[1]
    write_bomb(tmp_path / "images/Synth/0.png")  # passed the header check, a bomb by the time it loads
    got = dataset[0]
    assert got["input_ids"] == want["input_ids"] and bool((got["pixel_values"] == want["pixel_values"]).all())
    assert [(s["index"], REFUSED in s["reason"]) for s in dataset.skipped] == [(0, True)]
