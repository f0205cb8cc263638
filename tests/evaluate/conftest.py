"""Fixtures for the evaluation tests: reference-format files laid out like the pipeline writes them."""

import pytest
from eval_cases import CLS, REC, TRAIN, strip_prediction, write


@pytest.fixture
def files(tmp_path):
    """Prediction, source and training files laid out like the pipeline writes them."""
    pred = tmp_path / "pred"
    src = tmp_path / "Json-file"
    out = {
        "cls_pred": write(pred / "test_pred_cls.json", CLS),
        "rec_pred": write(pred / "test_pred_rec.json", REC),
        "cls_src": write(src / "test" / "ColonINST-test-cls.json", strip_prediction(CLS)),
        "rec_src": write(src / "test" / "ColonINST-test-rec.json", strip_prediction(REC)),
        "train": write(src / "train" / "ColonINST-train-3tasks.json", TRAIN),
        "pred_dir": pred,
        "src_dir": src,
    }
    return out
