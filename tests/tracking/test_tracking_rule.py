"""The promotion rule as a pure function, and metrics loading."""

from __future__ import annotations

import json

import pytest

from colonpipe.params import RegisterParams
from colonpipe.tracking.rule import RegistryError, check_metrics, decide, load_metrics

CFG = RegisterParams(
    model_name="m",
    primary_metric="test.cls.accuracy",
    guards={"test.reg.accuracy": 0.02, "test.rec.n_unparsed": 1.0},
    floors={"test.cls.accuracy": 0.5},
    higher_is_better={"test.rec.n_unparsed": False},
)
CHAMP = {"test.cls.accuracy": 0.80, "test.reg.accuracy": 0.90, "test.rec.n_unparsed": 3.0}


def cand(cls=0.85, reg=0.90, unparsed=3.0):
    return {"test.cls.accuracy": cls, "test.reg.accuracy": reg, "test.rec.n_unparsed": unparsed}


def test_win_needs_strictly_better_primary_and_all_guards():
    ok, reason, comps = decide(CFG, cand(reg=0.885, unparsed=4.0), CHAMP)  # both within tolerance
    assert ok and "beats" in reason
    assert [(c.metric, c.rule, c.ok) for c in comps] == [
        ("test.cls.accuracy", "beat", True),
        ("test.rec.n_unparsed", "guard", True),
        ("test.reg.accuracy", "guard", True),
    ]
    assert comps[0].candidate == 0.85 and comps[0].reference == 0.80


def test_equal_primary_is_a_loss():
    ok, reason, _ = decide(CFG, cand(cls=0.80), CHAMP)
    assert not ok and "does not beat" in reason


def test_guard_violated_blocks_promotion_even_when_primary_wins():
    ok, reason, comps = decide(CFG, cand(cls=0.99, reg=0.87), CHAMP)
    assert not ok and "test.reg.accuracy" in reason
    ok, reason, _ = decide(CFG, cand(cls=0.99, unparsed=4.5), CHAMP)  # lower-is-better guard
    assert not ok and "test.rec.n_unparsed" in reason


def test_first_model_is_judged_by_floors():
    assert decide(CFG, cand(cls=0.5), None)[0]  # a floor is inclusive
    ok, reason, comps = decide(CFG, cand(cls=0.49), None)
    assert not ok and "floors not met" in reason and comps[0].rule == "floor"


def test_champion_without_primary_metric_is_judged_like_first_model():
    ok, reason, _ = decide(CFG, cand(), {"test.reg.accuracy": 0.9})
    assert ok and reason.startswith("first model")


def test_load_metrics_prefixes_file_stem_and_reports_bad_files(tmp_path):
    (tmp_path / "test.json").write_text(json.dumps({"cls": {"accuracy": 0.9, "n": 10, "label": "x"}}))
    (tmp_path / "val.json").write_text(json.dumps({"rec": {"acc_iou_0.5": 0.4}}))
    metrics = load_metrics([tmp_path / "test.json", tmp_path / "val.json"])
    assert metrics == {"test.cls.accuracy": 0.9, "test.cls.n": 10.0, "val.rec.acc_iou_0.5": 0.4}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(RegistryError, match="bad.json: not valid JSON"):
        load_metrics([tmp_path / "bad.json"])
    with pytest.raises(RegistryError, match="missing.json: metrics file not found"):
        load_metrics([tmp_path / "missing.json"])
    with pytest.raises(RegistryError, match=r"test.json: metrics \['test.reg.accuracy'"):
        check_metrics(RegisterParams(guards={"test.reg.accuracy": 0.1}), metrics, source="test.json")
