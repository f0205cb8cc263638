"""The ColonINST contract module: box text both ways, file names, the record reader and turns."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from colonpipe import coloninst as C


@pytest.mark.parametrize("box", [(0, 0, 0, 0), (3, 4, 620, 528), (10**30, 1, 10**30, 2)])
def test_box_text_round_trips(box):
    text = C.format_box(box)
    assert text == "{" + "".join(f"<{v}>" for v in box) + "}"
    assert C.parse_box(text) == box


@pytest.mark.parametrize("text", ["{<1><2><3>}", "{<1> <2><3><4>}", "<1><2><3><4>", "{<5><2><3><4>}", "{<-1><2><3><4>}"])
def test_parse_box_is_strict_and_names_the_text(text):
    with pytest.raises(C.BoxTextError, match="box text"):
        C.parse_box(text)


@pytest.mark.parametrize("box", [(1, 2, 3), (5, 0, 4, 9), (-1, 0, 3, 3)])
def test_format_box_refuses_bad_boxes(box):
    with pytest.raises(C.BoxTextError):
        C.format_box(box)


def test_file_names_are_built_and_parsed_by_one_rule(tmp_path):
    for split in C.SPLITS:
        for task in C.TASKS:
            assert C.parse_instruction_file(C.instruction_file(split, task)) == (split, task)
            assert C.parse_prediction_file(C.prediction_file(split, task)) == (split, task)
    assert C.instruction_file("train", "3tasks") == "ColonINST-train-3tasks.json"
    assert C.instruction_path(tmp_path, "val", "rec") == tmp_path / "val" / "ColonINST-val-rec.json"
    assert C.parse_prediction_file("test_pred_rec.json.bak") is None
    with pytest.raises(C.ColonINSTError, match="no ColonINST file"):
        C.instruction_file("dev", "cls")
    with pytest.raises(C.ColonINSTError, match="no prediction file"):
        C.prediction_file("test", "3tasks")


@pytest.mark.parametrize(
    ("text", "message"),
    [("[", "cannot read JSON"), ('{"a": 1}', "expected a JSON list of records, got dict"),
     ("[" * 100_000 + "]" * 100_000, "cannot read JSON: nested too deeply"), ('[{"id": 1' + "0" * 5000 + "}]", "cannot read JSON")],
)
def test_read_records_names_the_file(tmp_path, text, message):
    path = tmp_path / "ColonINST-test-cls.json"
    path.write_text(text)
    with pytest.raises(C.ColonINSTError, match=rf"{path.name}: {message}"):
        C.read_records(path)
    with pytest.raises(C.ColonINSTError, match="file not found"):
        C.read_records(tmp_path / "missing.json")


def _record(question="<image>\nCategorize the object.", answer="polyp", **extra):
    return {"id": "Kvasir/a/1.jpg", "image": "1", "conversations": [
        {"from": "human", "value": question}, {"from": "gpt", "value": answer}], **extra}


def test_turns_dialogue_and_question(tmp_path):
    rec = _record()
    rec["conversations"].append({"from": "prediction", "value": "adenoma"})
    path = tmp_path / "p.json"
    path.write_text(json.dumps([rec, 3]))
    first, other = C.read_records(path)
    assert C.dialogue(first) == ("Kvasir/a/1.jpg", "<image>\nCategorize the object.", "polyp")
    assert C.turn(first, C.PREDICTION) == "adenoma" and C.turn(other, C.GPT) is None
    assert C.image_and_question(first) == ("Kvasir/a/1.jpg", "<image>\nCategorize the object.")
    assert C.question_text(C.turn(first, C.HUMAN)) == "Categorize the object."
    assert C.dataset_of(C.record_id(first)) == "Kvasir" and C.dataset_of(None) == C.UNKNOWN_DATASET
    assert C.read_records(path, limit=1) == [first]


@pytest.mark.parametrize(
    ("record", "message"),
    [(3, "not an object"), (_record(question="no image token"), "exactly one <image>"),
     ({"id": "x", "conversations": [{"from": "gpt", "value": "a"}]}, "human and a gpt turn"),
     ({"id": "x", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "first turn")],
)
def test_dialogue_says_what_is_wrong(record, message):
    with pytest.raises(C.ColonINSTError, match=message):
        C.dialogue(record)


def test_contract_and_params_import_no_heavy_dependency():
    code = ("import sys, colonpipe.coloninst, colonpipe.params, colonpipe.atomic, colonpipe.hashing; "
            "heavy = {'torch', 'mlflow', 'prefect', 'dvc', 'transformers', 'numpy', 'PIL'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
