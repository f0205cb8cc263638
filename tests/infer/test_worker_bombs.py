"""Inference: a decompression bomb is an error record of its position; its shard goes on, and so
does the other one, predicting every other record (``run_shard``, the fan-out unit, in process:
the subprocess fan-out itself is tested in test_runner)."""

from __future__ import annotations

import json

import pytest

from colonpipe.infer.journal import read_journals
from colonpipe.infer.worker import ShardSpec, run_shard
from tests.bombs import ERROR_SIDE, WARNING_SIDE, write_bomb
from tests.infer.conftest import make_dataset

REFUSED = "decompression bomb refused before decoding"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bombs_become_error_records_and_both_shards_predict_the_rest(tmp_path, tiny_model_dir):
    path = make_dataset(tmp_path, 8)
    images = tmp_path / "images"
    write_bomb(images / "Synth/bomb.png", ERROR_SIDE)
    write_bomb(images / "Synth/warn.png", WARNING_SIDE)
    records = json.loads(path.read_text())
    records[1]["id"], records[6]["id"] = "Synth/bomb.png", "Synth/warn.png"  # in shard 1 and shard 0 of 2
    path.write_text(json.dumps(records))
    journals = tmp_path / "journals"
    results = [run_shard(ShardSpec(input_path=str(path), image_root=str(images), model_dir=str(tiny_model_dir),
                                   journal_dir=str(journals), shard=shard, num_shards=2, batch_size=2,
                                   max_new_tokens=4, threads=1, progress=False))
               for shard in (0, 1)]
    assert [(r.total, r.done, r.errors) for r in results] == [(4, 3, 1), (4, 3, 1)]
    entries = read_journals(journals)
    errors = {i: e["error"] for i, e in entries.items() if "error" in e}
    assert sorted(entries) == list(range(8)) and sorted(errors) == [1, 6]
    assert REFUSED in errors[1] and "bomb.png" in errors[1]
    assert REFUSED in errors[6] and "10000x10000" in errors[6]
    assert all(isinstance(entries[i]["prediction"], str) for i in set(range(8)) - {1, 6})
