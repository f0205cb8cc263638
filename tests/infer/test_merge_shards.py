import json

import pytest

from colonpipe.infer.journal import JournalWriter, journal_path
from colonpipe.infer.merge_shards import MergeError, merge_predictions


def _rec(i, image_id):
    return {"id": image_id, "image": str(i),
            "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}


def test_merge_in_input_order_with_repeated_ids(tmp_path):
    records = [_rec(0, "D/x.png"), _rec(1, "D/x.png"), _rec(2, "D/y.png"), "not a record"]
    with JournalWriter(journal_path(tmp_path, 1, 2)) as j:  # shard 1 finished first, out of order
        j.append([{"index": 3, "error": "bad record: record is a str"}, {"index": 1, "prediction": "ulcer"}])
    with JournalWriter(journal_path(tmp_path, 0, 2)) as j:
        j.append([{"index": 2, "error": "image: cannot read"}, {"index": 0, "prediction": "polyp"}])
    out = tmp_path / "pred" / "test_pred_cls.json"
    summary = merge_predictions(records, tmp_path, out)
    assert (summary.records, summary.errors) == (4, 2)
    got = json.loads(out.read_text())
    assert [r["conversations"][-1] for r in got] == [
        {"from": "prediction", "value": "polyp"},
        {"from": "prediction", "value": "ulcer"},
        {"from": "prediction", "value": ""},
        {"from": "prediction", "value": ""},
    ]
    # same id twice keeps both records, each with its own prediction
    assert [r.get("id") for r in got[:2]] == ["D/x.png", "D/x.png"]
    assert got[0]["conversations"][:2] == records[0]["conversations"]  # input untouched otherwise
    assert "error" not in got[0] and got[2]["error"] == "image: cannot read"
    assert got[3] == {"record": "not a record", "conversations": [{"from": "prediction", "value": ""}],
                      "error": "bad record: record is a str"}
    assert len(records[0]["conversations"]) == 2  # the caller's records are not mutated
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_missing_position_is_an_error(tmp_path):
    records = [_rec(i, "D/x.png") for i in range(3)]
    with JournalWriter(journal_path(tmp_path, 0, 1)) as j:
        j.append([{"index": 0, "prediction": "a"}, {"index": 2, "prediction": "c"}])
    out = tmp_path / "p.json"
    with pytest.raises(MergeError, match=r"1 of 3 positions .*first: 1"):
        merge_predictions(records, tmp_path, out)
    assert not out.exists()
