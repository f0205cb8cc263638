"""Reference-evaluator semantics of the pure metric functions, on hand-computed cases."""

import math

import pytest

from colonpipe.evaluate import metrics as M


# ----------------------------------------------------------------------------- CLS / REG
@pytest.mark.parametrize(
    "pred, answer, ok",
    [
        ("polyp", "polyp", True),
        ("polyp<|endoftext|>", "polyp", True),  # EOS left in the output
        ("POLYP", "polyp", True),  # upper case
        ("Accessory Tool<|endoftext|>", "accessory tool", True),
        ("  polyp \n", "polyp", True),  # outer whitespace (reference inference strips it)
        ("polyp <|endoftext|>", "polyp", True),
        ("polyps", "polyp", False),  # whole-string match, no stemming
        ("a polyp", "polyp", False),  # no substring match
        ("", "polyp", False),  # empty output
        ("<|endoftext|>", "polyp", False),
        ("low grade  adenoma", "low grade adenoma", False),  # inner whitespace is kept
    ],
)
def test_exact_match(pred, answer, ok):
    assert M.exact_match(pred, answer) is ok


def test_majority_label_counts_normalised_and_breaks_ties_alphabetically():
    assert M.majority_label(["Polyp", "polyp", "ulcer"]) == "polyp"
    assert M.majority_label(["ulcer", "erosion"]) == "erosion"
    assert M.majority_label([]) is None


# ----------------------------------------------------------------------------- box parsing
@pytest.mark.parametrize(
    "text, box",
    [
        ("{<123><95><242><195>}", (123, 95, 242, 195)),
        ("{< 12 ><  3><4 ><5>}", (12, 3, 4, 5)),  # spaces inside the brackets
        ("{<1><2><3><4>}<|endoftext|>", (1, 2, 3, 4)),  # EOS left in
        ("the box is <1> <2>, <3> and <4>.", (1, 2, 3, 4)),  # any text around the numbers
        ("{<007><0><10><10>}", (7, 0, 10, 10)),
        ("{<1><2><3>}", None),  # 3 numbers
        ("{<1><2><3><4><5>}", None),  # 5 numbers
        ("", None),  # empty output
        ("polyp", None),
        ("{<-1><2><3><4>}", None),  # a minus sign is not an integer the regex accepts
        ("{<1.5><2><3><4>}", None),
    ],
)
def test_parse_box(text, box):
    assert M.parse_box(text) == box


# ----------------------------------------------------------------------------- IoU
@pytest.mark.parametrize(
    "a, b, iou",
    [
        ((0, 0, 9, 9), (0, 0, 9, 9), 1.0),
        ((5, 5, 5, 5), (5, 5, 5, 5), 1.0),  # single pixel: inclusive area 1, not 0
        ((0, 0, 9, 9), (5, 5, 14, 14), 25 / 175),
        ((0, 0, 9, 9), (10, 0, 19, 9), 0.0),  # touching: no shared pixel
        ((0, 0, 9, 9), (9, 0, 18, 9), 10 / 190),  # sharing one column: intersection width 1
        ((0, 0, 9, 9), (0, 0, 19, 9), 0.5),
        ((0, 0, 9, 9), (0, 0, 18, 9), 100 / 190),
        ((0, 0, 9, 9), (20, 20, 29, 29), 0.0),
        ((0, 0, 3, 1), (2, 0, 5, 1), 4 / 12),
    ],
)
def test_box_iou_inclusive_pixels(a, b, iou):
    assert M.box_iou(a, b) == pytest.approx(iou, abs=1e-12)
    assert M.box_iou(b, a) == pytest.approx(iou, abs=1e-12)


@pytest.mark.parametrize(
    "inverted",
    [
        (9, 9, 0, 0),  # inverted in both axes: positive "area" by the formula
        (9, 0, 0, 9),  # inverted in x only: negative area
        (0, 20, 9, 9),  # area exactly -100: the literal union with a 100-px box would be 0
        (5, 5, 4, 4),  # width/height 0
    ],
)
def test_inverted_box_scores_zero_without_division(inverted):
    gt = (0, 0, 9, 9)
    assert M.box_iou(inverted, gt) == 0.0
    assert M.box_iou(gt, inverted) == 0.0
    assert M.box_iou(inverted, inverted) == 0.0
    assert M.rec_iou(M.format_box(inverted), M.format_box(gt)) == 0.0


def test_rec_iou_parse_failures_on_either_side_give_zero():
    good = "{<0><0><9><9>}"
    assert M.rec_iou(good, good) == 1.0
    assert M.rec_iou("{<0><0><9>}", good) == 0.0
    assert M.rec_iou(good, "{<0><0><9>}") == 0.0  # a bad answer also scores 0
    assert M.rec_iou("", good) == 0.0
    assert M.rec_iou("{< 0 >< 0 >< 9 >< 9 >}<|endoftext|>", good) == 1.0


def test_iou_hit_is_strictly_above_half():
    assert not M.iou_hit(0.5)
    assert M.iou_hit(0.5000001)
    assert M.iou_hit(100 / 190)
    assert not M.iou_hit(0.0)


def test_mean_box_rounds_half_up():
    assert M.mean_box([(0, 0, 10, 10), (2, 2, 13, 13)]) == (1, 1, 12, 12)  # 11.5 -> 12
    assert M.mean_box([(0, 0, 1, 1), (1, 1, 2, 2), (1, 1, 2, 2)]) == (1, 1, 2, 2)  # 0.667, 1.667
    assert M.mean_box([]) is None


def test_group_means_and_mean():
    assert M.mean([]) == 0.0
    assert M.group_means([1.0, 0.0, 1.0], ["b", "a", "b"]) == {
        "a": {"n": 1, "mean": 0.0},
        "b": {"n": 2, "mean": 1.0},
    }
    with pytest.raises(ValueError):
        M.group_means([1.0], [])


# ----------------------------------------------------------------------------- CAP
def test_tokenize_caption():
    assert M.tokenize_caption("The polyp, a HIGH-grade lesion; patient's colon!<|endoftext|>") == (
        "the polyp a high-grade lesion patient's colon"
    )
    assert M.tokenize_caption("  ") == ""


CAPTIONS = [
    "The image shows a sessile polyp on the colon wall.",
    "A fresh blood spot is visible near the fold.",
    "An accessory tool touches the mucosa in this frame.",
]


def test_caption_scores_identical_captions_are_perfect():
    s = M.caption_scores(CAPTIONS, [c.upper() for c in CAPTIONS])  # case and punctuation ignored
    assert s["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert s["rouge_l"] == pytest.approx(1.0)
    assert s["cider"] == pytest.approx(10.0)  # CIDEr-D's scale: identical captions give 10
    assert s["per_record"]["rouge_l"] == pytest.approx([1.0, 1.0, 1.0])


def test_caption_scores_different_captions():
    s = M.caption_scores(["a b c d", "x y z w"], ["a b e f", "p q r s"])
    # ROUGE-L record 1: LCS 2 of 4 -> P = R = 0.5 -> F_beta = 0.5; record 2: 0.
    assert s["per_record"]["rouge_l"] == pytest.approx([0.5, 0.0])
    assert s["rouge_l"] == pytest.approx(0.25)
    assert s["bleu4"] < 1e-6  # no 3-/4-gram matches at all
    assert 0.0 <= s["cider"] < 10.0
    partial = M.caption_scores(CAPTIONS[:2], [CAPTIONS[0], CAPTIONS[2]])
    assert 0.0 < partial["bleu4"] < 1.0 and 0.0 < partial["rouge_l"] < 1.0


def test_caption_scores_empty_prediction_and_empty_corpus():
    s = M.caption_scores(["", CAPTIONS[1]], CAPTIONS[:2])
    assert s["per_record"]["rouge_l"][0] == 0.0 and s["per_record"]["cider"][0] == 0.0
    assert M.caption_scores([], [])["bleu4"] == 0.0
    with pytest.raises(ValueError):
        M.caption_scores(["a"], [])


def test_no_nan_anywhere():
    assert not math.isnan(M.box_iou((0, 0, 0, 0), (0, 0, 0, 0)))
