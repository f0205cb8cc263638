"""Overrides checked before anything runs: key checks on any DVC repo, colonpipe's schema on its own.

The tiny repo's params.yaml (sections ``a``, ``b``) is not a colonpipe params file: it gets
the key and syntax checks only. A copy of this checkout's params.yaml gets the schema too.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from colonpipe.params import ParamsError, check_point
from flows import dvc_queue as dq
from flows import overrides as ovr
from tests.flows.conftest import PROJECT, make_tiny_repo

REJECTED = [  # (override, what the error says)
    ("a.typo=1", "a.typo: not a key of params.yaml (keys of a: n)"),
    ("c.n=1", "c.n: not a key of params.yaml (keys of the top level: a, b)"),
    ("a.n.deeper=1", "a.n.deeper: not a key of params.yaml (keys of a.n: int, no keys)"),
    ("other.yaml:a.n=1", "a file prefix is not allowed"),
    ("a.n=${b.word}", "interpolation is not allowed"),
    ('b.word="${a.n}"', "interpolation is not allowed"),
    ("--force", "looks like an option"),
    ("-x", "looks like an option"),
    ("+a.extra=1", "only key=value on an existing key"),
    ("~a.n", "only key=value on an existing key"),
    ("a.n=1,2", "a sweep (a,b / range / glob) is not one point"),
    ("a.n=range(1,3)", "a sweep"),
    ("a.n", "is not key=value"),
    ("a.n=[1", "'a.n=[1': "),
]


@pytest.fixture(scope="module")
def shared_tiny_repo(tmp_path_factory):
    """One tiny repo for the checks that only read it."""
    return make_tiny_repo(tmp_path_factory.mktemp("overrides") / "tiny")


@pytest.mark.parametrize("override,message", REJECTED)
def test_bad_overrides_are_rejected_naming_the_point_and_the_key(shared_tiny_repo, override, message):
    before = (shared_tiny_repo / "params.yaml").read_text()
    with pytest.raises(ovr.OverrideError) as info:
        ovr.check_point(shared_tiny_repo, ["b.word=\"ok\"", override], point="sweep point 2")
    assert str(info.value).startswith("sweep point 2: ") and message in str(info.value)
    assert (shared_tiny_repo / "params.yaml").read_text() == before  # checked on a copy


def test_a_foreign_params_file_gets_key_checks_only(shared_tiny_repo):
    # no colonpipe schema here: a string where the file has an int is the project's business
    assert ovr.check_point(shared_tiny_repo, ['a.n="x"', "b.word=[1, 2]"], point="p") == {"a": {"n": "x"}, "b": {"word": [1, 2]}}
    assert check_point({"a": {"n": 1}}, point="p") is None and check_point({}, point="p") is None


@pytest.fixture
def colonpipe_repo(tmp_path):
    shutil.copyfile(PROJECT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_colonpipe_params_are_built_through_the_section_dataclasses(colonpipe_repo):
    with pytest.raises(ovr.OverrideError) as info:
        ovr.check_point(colonpipe_repo, ['finetune.lr="x"'], point='sweep point 2 (finetune.lr="x")')
    assert str(info.value) == "sweep point 2 (finetune.lr=\"x\"): 1 problem(s):\n  finetune.lr: expected float, got 'x'"
    with pytest.raises(ovr.OverrideError, match=r"ingest\.sources\[0\]\.format: 'nope' is not one of"):
        ovr.check_point(colonpipe_repo, ['ingest.sources.0.format="nope"'], point="p")
    with pytest.raises(ovr.OverrideError, match=r"p: 1 problem\(s\):\n  infer: max_new_tokens values must be >= 1"):
        ovr.check_point(colonpipe_repo, ["infer.max_new_tokens.cls=0"], point="p")
    with pytest.raises(ovr.OverrideError, match=r"finetune\.lrr: not a key of params\.yaml \(keys of finetune: epochs"):
        ovr.check_point(colonpipe_repo, ["finetune.lrr=1"], point="p")
    good = ovr.check_point(colonpipe_repo, ["finetune.lr=0.0005", "finetune.lora.r=8"], point="p")
    assert good["finetune"]["lr"] == 0.0005 and good["finetune"]["lora"]["r"] == 8


def test_the_schema_applies_when_every_section_is_colonpipes():
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    assert check_point(raw, point="p")["finetune"].lr == raw["finetune"]["lr"]
    with pytest.raises(ParamsError, match=r"^p: 1 problem\(s\):\n  demo\.seed: expected int, got 'x'$"):
        check_point({**raw, "demo": {**raw["demo"], "seed": "x"}}, point="p")
    assert check_point({**raw, "mine": {"k": 1}}, point="p") is None  # another project's file


def test_targets_must_be_stages_not_options(shared_tiny_repo):
    ovr.check_targets(shared_tiny_repo, ["two"])
    with pytest.raises(ovr.OverrideError, match=r"sweep targets: \['--force', '-x'\] look like options"):
        ovr.check_targets(shared_tiny_repo, ["two", "--force", "-x"], what="sweep targets")
    with pytest.raises(ValueError, match=r"no stage named \['nope'\]"):
        ovr.check_targets(shared_tiny_repo, ["nope"])


def test_a_bad_sweep_point_fails_before_any_experiment_is_queued(prefect_api, tiny_repo):
    from flows.sweep import sweep

    state = sweep(repo=str(tiny_repo), points=[{"b.word": "ok"}, {"a.typo": 1}], name="bad", return_state=True)
    assert state.is_failed()
    assert 'sweep point 2 (a.typo=1): a.typo: not a key of params.yaml' in state.message
    assert dq.queue_tasks(tiny_repo) == []  # point 1 was valid, and still nothing was queued
    assert not (tiny_repo / "mlruns").exists()  # nor any MLflow run opened
    option = sweep(repo=str(tiny_repo), points=[{"b.word": "ok"}], targets=["--force"], name="t", return_state=True)
    assert option.is_failed() and "look like options" in option.message
    named = sweep(repo=str(tiny_repo), points=[{"b.word": "ok"}], name="-n", return_state=True)
    assert named.is_failed() and "name '-n' must start with a letter or digit" in named.message


def test_a_bad_pipeline_override_fails_before_params_or_stages_are_touched(prefect_api, tiny_repo):
    from flows.pipeline import pipeline

    before = (tiny_repo / "params.yaml").read_text()
    state = pipeline(repo=str(tiny_repo), params=["b.word=ok", "a.n=${b.word}"], return_state=True)
    assert state.is_failed() and "params.yaml: cannot apply overrides ['b.word=ok', 'a.n=${b.word}']" in state.message
    assert "interpolation is not allowed" in state.message
    assert (tiny_repo / "params.yaml").read_text() == before and not (tiny_repo / "one.txt").exists()
