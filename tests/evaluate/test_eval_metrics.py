"""Reference-evaluator semantics of the pure metric functions, on hand-computed cases."""

import math
import re
import sys

import pytest

from colonpipe.evaluate import metrics as M


# ----------------------------------------------------------------------------- CLS / REG
@pytest.mark.parametrize(
    "pred, answer, reference, lenient",
    [
        ("polyp", "polyp", True, True),
        ("polyp<|endoftext|>", "polyp", True, True),  # EOS left in the output
        ("POLYP", "polyp", True, True),  # upper case
        ("Accessory Tool<|endoftext|>", "accessory tool", True, True),
        ("Polyp<|ENDOFTEXT|>", "polyp", True, True),  # lower() before the EOS removal, as the reference
        ("polyp ", "polyp", False, True),  # outer whitespace: the reference counts it wrong
        ("polyp\n", "polyp", False, True),
        ("  polyp \n", "polyp", False, True),
        ("polyp <|endoftext|>", "polyp", False, True),
        ("polyp", "polyp ", False, True),  # whitespace on the answer side
        ("polyp<|endoftext|>", "polyp<|endoftext|>", False, False),  # the reference removes EOS from predictions only
        ("polyps", "polyp", False, False),  # whole-string match, no stemming
        ("a polyp", "polyp", False, False),  # no substring match
        ("", "polyp", False, False),  # empty output
        ("<|endoftext|>", "polyp", False, False),
        ("low grade  adenoma", "low grade adenoma", False, False),  # inner whitespace is kept
        ("", "", True, True),
    ],
)
def test_exact_match_reference_and_lenient(pred, answer, reference, lenient):
    assert M.exact_match(pred, answer) is reference  # the default is the reference rule
    assert M.exact_match(pred, answer, "reference") is reference
    assert M.exact_match(pred, answer, "lenient") is lenient
    # the reference evaluator's own expression, verbatim (spec section 5)
    assert (pred.lower().replace("<|endoftext|>", "") == answer.lower()) is reference


def test_unknown_scoring_is_refused():
    with pytest.raises(ValueError, match=r"unknown scoring 'strict' \(known: reference, lenient\)"):
        M.exact_match("polyp", "polyp", "strict")
    assert set(M.SCORING) == set(M.SCORING_RULES) == {"reference", "lenient"}


def test_majority_label_counts_normalised_and_breaks_ties_alphabetically():
    assert M.majority_label(["Polyp", "polyp", "ulcer"]) == "polyp"
    assert M.majority_label(["ulcer", "erosion"]) == "erosion"
    assert M.majority_label([]) is None
    # the reference keeps "polyp " apart from "polyp"; lenient folds them
    assert M.majority_label(["polyp ", "polyp ", "polyp", "ulcer", "ulcer"]) == "polyp "
    assert M.majority_label(["polyp ", "polyp ", "polyp", "ulcer", "ulcer"], "lenient") == "polyp"


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
    assert M.box_numbers(text) == box


def test_parse_box_huge_numbers_are_unparsable_not_a_crash():
    limit = "9" * M.MAX_BOX_DIGITS  # 4300 digits: Python's default int-string limit, still read
    assert M.box_numbers(f"{{<{limit}><0><1><1>}}") == (int(limit), 0, 1, 1)
    over = "1" + "0" * M.MAX_BOX_DIGITS  # 4301 digits: int() raises ValueError here
    with pytest.raises(ValueError):
        int(over)
    assert M.box_numbers(f"{{<{over}><0><1><1>}}") is None
    assert M.box_numbers(f"{{<0><0><9><9>}}<{over}>") is None  # a fifth number still counts
    assert M.box_numbers("{<" + "0" * 5000 + "7><0><1><1>}") is None  # leading zeros count too
    assert M.rec_iou(f"{{<{over}><0><9><9>}}", "{<0><0><9><9>}") == 0.0
    assert M.rec_iou("{<0><0><9><9>}", f"{{<0><0><{over}><9>}}") == 0.0


def test_parse_box_under_a_lower_int_limit_set_by_the_host():
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the lowest Python allows
    try:
        assert M.box_numbers("{<" + "1" * 641 + "><0><1><1>}") is None
        assert M.box_numbers("{<1><2><3><4>}") == (1, 2, 3, 4)
    finally:
        sys.set_int_max_str_digits(old)


def test_parse_box_reads_every_digit_python_regex_matches():
    """``\\d`` matches every Unicode decimal digit and ``int`` reads them all: the reference
    evaluator (same regex, same ``int``) parses them, so we do too."""
    digits = re.findall(r"\d", "".join(map(chr, range(sys.maxunicode + 1))))
    assert len(digits) > 600  # Arabic-Indic, Devanagari, fullwidth, mathematical digits, ...
    for d in digits:
        assert M.box_numbers(f"{{<{d}><{d}><{d}{d}><{d}{d}>}}") == (int(d), int(d), int(d + d), int(d + d)), repr(d)
    assert M.rec_iou("{<\u0660><\u0660><\u0669><\u0669>}", "{<0><0><9><9>}") == 1.0  # Arabic-Indic 0..9
    assert M.box_numbers("{<\u00b2><0><1><1>}") is None  # superscript two is no decimal digit


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


def _box_text(box) -> str:
    """Box text written by hand: an inverted box is valid *model output*, not valid data."""
    return "{" + "".join(f"<{v}>" for v in box) + "}"


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
    assert M.rec_iou(_box_text(inverted), _box_text(gt)) == 0.0


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
    assert M.mean_box([(0, 0, 0, 0), (1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1)]) == (1, 1, 1, 1)  # 0.75
    assert M.mean_box([]) is None


def test_huge_coordinates_never_overflow_a_float():
    big = 10**400  # a 401-digit number parses (under the limit) but is far beyond a float
    assert M.mean_box([(0, 0, big, big), (0, 0, big + 2, big + 2)]) == (0, 0, big + 1, big + 1)
    assert M.box_iou((0, 0, big, big), (0, 0, big, big)) == 1.0
    assert M.box_iou((0, 0, big, big), (0, 0, 9, 9)) == 0.0  # 100 / ~1e800: underflows to 0, no error
    half = M.box_iou((0, 0, big - 1, big - 1), (0, 0, 2 * big - 1, big - 1))
    assert half == 0.5 and not M.iou_hit(half)


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


@pytest.mark.parametrize(
    "predictions, references",
    [(["a polyp"], [""]), ([""], [""]), (["", ""], ["...", "!!"]), (["a b c d e"] * 3, ["", "", ""]),
     (["", "a polyp"], ["...", "a polyp"])],
)
def test_caption_scores_empty_references_never_raise(predictions, references):
    """pycocoevalcap's CIDEr fails on max([]) when no reference has a token; it scores 0."""
    s = M.caption_scores(predictions, references)
    values = [s["bleu4"], s["rouge_l"], s["cider"], *(v for each in s["per_record"].values() for v in each)]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    if not any(M.tokenize_caption(r) for r in references):
        assert s["cider"] == 0.0 and s["per_record"]["cider"] == [0.0] * len(references)


def test_no_nan_anywhere():
    assert not math.isnan(M.box_iou((0, 0, 0, 0), (0, 0, 0, 0)))
