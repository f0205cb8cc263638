"""The stage-script skeleton: its own arguments plus --params, one error line and exit 1 for bad
input, a traceback for a bug."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import yaml

from colonpipe.stage_cli import run_stage

REPO_PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def _params(tmp_path: Path, **instruct) -> Path:
    """The project's params.yaml with ``instruct`` keys replaced."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**REPO_PARAMS, "instruct": {**REPO_PARAMS["instruct"], **instruct}}))
    return path


def _args(parser) -> None:
    parser.add_argument("--out", type=Path, required=True)


def test_the_section_reaches_run_and_none_means_success(tmp_path):
    seen = []
    code = run_stage("instruct", "doc", _args, lambda args, p: seen.append((args.out, p.seed)),
                     ["--out", "x", "--params", str(_params(tmp_path, seed=7))])
    assert code == 0 and seen == [(Path("x"), 7)]


def test_bad_params_and_listed_errors_are_one_line_and_exit_1(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    argv = ["--out", "x", "--params", str(_params(tmp_path, split_ratios=[0.5, 0.5, 0.5]))]
    assert run_stage("instruct", None, _args, lambda a, p: 0, argv, name="mine") == 1
    assert [r.name for r in caplog.records] == ["stages.mine"]
    assert "split_ratios must sum to 1" in caplog.records[0].getMessage()
    argv = ["--out", "x", "--params", str(_params(tmp_path))]

    def refuses(args, params):
        raise FileNotFoundError(f"{args.out}: no such input")

    assert run_stage("instruct", None, _args, refuses, argv, errors=(FileNotFoundError,)) == 1
    assert "x: no such input" in caplog.records[-1].getMessage()
    with pytest.raises(ZeroDivisionError):  # not listed: a bug keeps its traceback
        run_stage("instruct", None, _args, lambda a, p: 1 / 0, argv, errors=(FileNotFoundError,))
