"""Stage 2 on [train, val] (what upstream trained on): the files, the fingerprint, the record of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from colonpipe.params import ParamsError, PartsParams, TrainParams, load_section
from colonpipe.train.dataset import split_files
from colonpipe.train.trainer import TrainPaths, fingerprint, run_training


def _coloninst(tmp_path: Path, train_data: Path) -> Path:
    """train_data copied into a Json-file tree: train 3tasks + val cls/reg/rec (val rec empty-ish)."""
    root = tmp_path / "Json-file"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    records = json.loads(train_data.read_text())
    shutil.copy(train_data, root / "train" / "ColonINST-train-3tasks.json")
    for i, task in enumerate(("cls", "reg", "rec")):
        (root / "val" / f"ColonINST-val-{task}.json").write_text(json.dumps(records[i * 4:(i + 1) * 4]))
    return root / "train" / "ColonINST-train-3tasks.json"


def test_split_files_finds_the_val_files_of_the_same_tasks(tmp_path, train_data):
    train = _coloninst(tmp_path, train_data)
    assert split_files(train, ["train"]) == {"train": [train]}
    got = split_files(train, ["train", "val"])
    assert [f.name for f in got["val"]] == ["ColonINST-val-cls.json", "ColonINST-val-reg.json",
                                           "ColonINST-val-rec.json"]
    (train.parent.parent / "val" / "ColonINST-val-reg.json").unlink()
    with pytest.raises(ValueError, match="ColonINST-val-reg.json"):
        split_files(train, ["train", "val"])
    with pytest.raises(ValueError, match="next to a ColonINST train file"):
        split_files(train_data, ["train", "val"])


def test_train_splits_are_validated(tmp_path):
    (tmp_path / "p.yaml").write_text("finetune:\n  train_splits: [train, test]\n")
    with pytest.raises(ParamsError, match="test stays held out"):
        load_section("finetune", tmp_path / "p.yaml")


def test_finetune_on_train_and_val_records_what_it_trained_on(tmp_path, tiny_base, train_data):
    train = _coloninst(tmp_path, train_data)
    splits = split_files(train, ["train", "val"])
    p = TrainParams(epochs=1, batch_size=8, grad_accum=1, max_length=128, save_steps=100, max_steps=1,
                    gradient_checkpointing=False, parts=PartsParams(llm="full"), train_splits=["train", "val"])
    images = train_data.parent / "images"
    paths = TrainPaths(tiny_base, train, images, tmp_path / "ft", splits=splits)
    metrics = run_training(p, paths, stage="finetune")
    cfg = json.loads((tmp_path / "ft" / "final" / "train_config.json").read_text())
    assert cfg["records"] == 48 + 12 and metrics["steps"] == 1
    assert cfg["train_splits"] == {"train": [str(train)], "val": [str(f) for f in splits["val"]]}
    only_train = TrainPaths(tiny_base, train, images, tmp_path / "ft")
    assert fingerprint(p, paths, world_size=1, total_steps=1) != fingerprint(p, only_train, world_size=1,
                                                                              total_steps=1)
