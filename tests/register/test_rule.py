"""The promotion rule as a pure function, and metrics loading."""

from __future__ import annotations

import json

import pytest

from colonpipe.params import ParamsError, RegisterParams
from colonpipe.register.rule import RegistryError, check_metrics, decide, load_metrics

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


# --------------------------------------------------------------------------- non-finite numbers
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("bad", [NAN, INF])
def test_a_non_finite_primary_metric_never_promotes_and_is_named(bad):
    ok, reason, comps = decide(CFG, cand(cls=bad), CHAMP)  # inf > 0.80 numerically: still refused
    assert not ok and "non-finite" in reason and f"test.cls.accuracy={bad}" in reason
    assert (comps[0].metric, comps[0].ok, comps[0].note) == ("test.cls.accuracy", False, "non-finite")
    ok, reason, _ = decide(CFG, cand(cls=bad), None)  # first model: a NaN/inf never meets a floor
    assert not ok and "test.cls.accuracy" in reason


def test_a_non_finite_guarded_metric_never_promotes():
    ok, reason, comps = decide(CFG, cand(cls=0.99, reg=NAN), CHAMP)
    assert not ok and "test.reg.accuracy=nan" in reason
    assert [c.ok for c in comps if c.metric == "test.reg.accuracy"] == [False]
    # lower is better: -inf "beats" every tolerance, and is refused all the same
    ok, reason, _ = decide(CFG, cand(cls=0.99, unparsed=-INF), CHAMP)
    assert not ok and "test.rec.n_unparsed=-inf" in reason


def test_a_champion_with_a_nan_primary_metric_is_replaced_by_a_finite_candidate():
    broken = {**CHAMP, "test.cls.accuracy": NAN}
    ok, reason, comps = decide(CFG, cand(cls=0.6), broken)
    assert ok and "champion's test.cls.accuracy is nan" in reason and comps[0].rule == "floor"
    assert not decide(CFG, cand(cls=0.4), broken)[0]  # ... but it must still clear the floors


def test_a_champion_nan_guard_is_not_compared_and_reported():
    ok, _, comps = decide(CFG, cand(), {**CHAMP, "test.reg.accuracy": NAN})
    guard = [c for c in comps if c.metric == "test.reg.accuracy"][0]
    assert ok and guard.ok and guard.note == "champion non-finite"


@pytest.mark.parametrize("key,value", [("floors", NAN), ("floors", -INF), ("guards", NAN), ("guards", INF)])
def test_params_reject_non_finite_floors_and_tolerances(tmp_path, key, value):
    from colonpipe.params import ParamsError, load_params

    text = f"register:\n  {key}:\n    test.cls.accuracy: {'.nan' if value != value else ('-.inf' if value < 0 else '.inf')}\n"
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=rf"register: {key}.test.cls.accuracy: .* must be a finite number"):
        load_params(tmp_path / "params.yaml")


def test_params_reject_a_non_finite_verify_delay():
    with pytest.raises(ParamsError, match="remote_verify_s must be a finite number"):
        RegisterParams(remote_verify_s=float("nan"))
    assert not RegisterParams(remote_verify_s=0.5).validate()


def test_the_summary_shows_a_non_finite_decision():
    from dataclasses import asdict

    from colonpipe.register.run_summary import format_decision
    from colonpipe.register.registry import Decision

    ok, reason, comps = decide(CFG, cand(cls=NAN), CHAMP)
    decision = Decision("m", "register", "2", "1", ok, reason, comps, "1", None).to_json()
    lines = format_decision(json.loads(json.dumps(decision, allow_nan=False)))
    assert "candidate nan vs 0.8000  FAIL (non-finite)" in lines[1] and "not promoted" in lines[0]
    assert asdict(comps[0])["candidate"] != asdict(comps[0])["candidate"]  # the live object keeps the float NaN
