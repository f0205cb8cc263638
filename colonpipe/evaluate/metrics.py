"""Pure scoring functions with the reference ColonINST evaluator's semantics (spec section 5).

Contract, decided once here and relied on everywhere else:

- **CLS / REG** (:func:`normalize_prediction`, :func:`normalize_answer`, :func:`exact_match`):
  under the default ``"reference"`` scoring a prediction is right exactly when
  ``prediction.lower().replace('<|endoftext|>', '') == answer.lower()`` - the reference
  evaluator's rule, with no strip, so ``"polyp "`` is wrong. ``"lenient"`` scoring
  (:data:`SCORING`) also strips outer whitespace on both sides; it exists for files from
  other generators, and must be asked for. Our inference strips every output, as the
  reference inference does, so on the pipeline's own files both give the same numbers.
- **REC** (:func:`parse_box`, :func:`box_iou`, :func:`rec_iou`): every ``<\\s*(\\d+)\\s*>``
  integer is taken from each side (``\\d`` is Python's: any Unicode decimal digit, which
  ``int`` reads too); unless *both* sides give exactly 4, IoU is 0. A number longer than
  :data:`MAX_BOX_DIGITS` digits makes its side unparsable (IoU 0) where the reference
  crashes on Python's int-string limit. Boxes are ``(x1, y1, x2, y2)`` in inclusive pixels:
  width ``x2 - x1 + 1``. An intersection with width or height <= 0 gives IoU 0 *before* any
  division. An inverted box (``x2 < x1`` or ``y2 < y1``) has inclusive width/height <= 0, so
  it can never intersect anything and scores 0 - the literal formula would divide by a
  union that can be 0 or negative. Whenever the intersection is positive, both boxes have
  positive area, so the union is positive and ``0 < IoU <= 1``. A hit is ``IoU > 0.5``
  strictly (:data:`IOU_THRESHOLD`). Integer arithmetic throughout: huge coordinates never
  overflow a float.
- **CAP** (:func:`caption_scores`): BLEU-4, ROUGE-L and CIDEr(-D) from pycocoevalcap's own
  scorers, on text tokenised by :func:`tokenize_caption` (Java's PTBTokenizer is not used).
  The reference has no CAP metric, so the scoring mode does not apply to it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

from colonpipe.coloninst import EOS_TOKEN

logger = logging.getLogger(__name__)

EOS = EOS_TOKEN  # the reference strips it from predictions only
SCORING_RULES = {  # CLS/REG rule, as printed by `colonpipe score`: the reference's own, or also stripped
    "reference": "prediction.lower().replace('<|endoftext|>', '') == answer.lower()",
    "lenient": "prediction.lower().replace('<|endoftext|>', '').strip() == answer.lower().strip()",
}
SCORING = tuple(SCORING_RULES)
MAX_BOX_DIGITS = 4300  # Python's default int-string limit, where the reference evaluator crashes
IOU_THRESHOLD = 0.5  # fixed by the reference evaluator; a hit is IoU > 0.5, strictly
BOX_NUMBER = re.compile(r"<\s*(\d+)\s*>")
_CAPTION_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")

Box = tuple[int, int, int, int]


# ----------------------------------------------------------------------------- CLS / REG
def check_scoring(scoring: str) -> str:
    """``scoring`` itself when it is one of :data:`SCORING`; ``ValueError`` otherwise."""
    if scoring not in SCORING:
        raise ValueError(f"unknown scoring {scoring!r} (known: {', '.join(SCORING)})")
    return scoring


def normalize_prediction(text: str, scoring: str = "reference") -> str:
    """``text.lower().replace('<|endoftext|>', '')``; ``"lenient"`` also strips outer whitespace.

    Lower-casing comes first, as in the reference, so ``<|ENDOFTEXT|>`` is removed too.
    """
    out = text.lower().replace(EOS, "")
    return out.strip() if check_scoring(scoring) == "lenient" else out


def normalize_answer(text: str, scoring: str = "reference") -> str:
    """``text.lower()`` (the reference removes no EOS from answers); ``"lenient"`` also strips."""
    out = text.lower()
    return out.strip() if check_scoring(scoring) == "lenient" else out


def exact_match(prediction: str, answer: str, scoring: str = "reference") -> bool:
    """True when the normalised prediction equals the normalised answer, whole string."""
    return normalize_prediction(prediction, scoring) == normalize_answer(answer, scoring)


def majority_label(labels: Iterable[str], scoring: str = "reference") -> str | None:
    """Most frequent normalised answer; ties go to the alphabetically first. None if empty.

    Normalised as answers are (:func:`normalize_answer`), so a constant predictor that
    outputs this label scores exactly the reported baseline accuracy.
    """
    counts = Counter(normalize_answer(label, scoring) for label in labels)
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


# ----------------------------------------------------------------------------- REC
def box_numbers(text: str) -> Box | None:
    """The reference evaluator's lenient REC box reading: the four ``<n>`` integers of ``text``
    as ``(x1, y1, x2, y2)``; None unless exactly 4. (The strict data rule is
    ``colonpipe.coloninst.parse_box``.)

    None too when a number has more than :data:`MAX_BOX_DIGITS` digits (checked before
    ``int``, whose cost grows with the square of the length) or ``int`` refuses it under a
    lower limit set by ``sys.set_int_max_str_digits``.
    """
    numbers = BOX_NUMBER.findall(text)
    if len(numbers) != 4 or any(len(n) > MAX_BOX_DIGITS for n in numbers):
        return None
    try:
        x1, y1, x2, y2 = (int(n) for n in numbers)
    except ValueError:
        return None
    return x1, y1, x2, y2


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes in inclusive pixels; 0 when they do not overlap.

    Inverted boxes give 0 (see module docstring); the result is always in ``[0, 1]``.
    """
    inter_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inter_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def rec_iou(prediction: str, answer: str) -> float:
    """Reference REC score of one record: IoU of the parsed boxes, 0 if either fails to parse."""
    pred_box, gt_box = box_numbers(prediction), box_numbers(answer)
    if pred_box is None or gt_box is None:
        return 0.0
    return box_iou(pred_box, gt_box)


def iou_hit(iou: float) -> bool:
    """The reference's REC accuracy criterion: IoU strictly above 0.5."""
    return iou > IOU_THRESHOLD


def mean_box(boxes: Iterable[Sequence[int]]) -> Box | None:
    """Per-coordinate mean of ``boxes``, rounded half up to integers; None if there are none.

    Exact integer arithmetic (``floor(s / n + 1/2) == (2s + n) // 2n``): no float, so a
    coordinate too big for a float cannot overflow.
    """
    boxes = list(boxes)
    if not boxes:
        return None
    n = len(boxes)
    sums = [sum(box[i] for box in boxes) for i in range(4)]
    x1, y1, x2, y2 = ((2 * s + n) // (2 * n) for s in sums)
    return x1, y1, x2, y2


# ----------------------------------------------------------------------------- grouping
def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for an empty sequence (an empty split scores 0, not NaN)."""
    return float(sum(values) / len(values)) if values else 0.0


def group_means(values: Sequence[float], keys: Sequence[Hashable]) -> dict[str, dict[str, float]]:
    """``{key: {"n": count, "mean": mean of its values}}``, keys sorted as strings."""
    if len(values) != len(keys):
        raise ValueError(f"group_means: {len(values)} values but {len(keys)} keys")
    groups: dict[str, list[float]] = defaultdict(list)
    for value, key in zip(values, keys):
        groups[str(key)].append(float(value))
    return {k: {"n": len(v), "mean": mean(v)} for k, v in sorted(groups.items())}


# ----------------------------------------------------------------------------- CAP
def tokenize_caption(text: str) -> str:
    """Lower-case, drop punctuation, split on whitespace; tokens joined by single spaces.

    Intra-word hyphens and apostrophes survive (``high-grade``, ``patient's``), as in the
    PTB tokenizer; ``<|endoftext|>`` is removed first.
    """
    return " ".join(_CAPTION_TOKEN.findall(text.replace(EOS, "").lower()))


def caption_scores(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU-4, ROUGE-L and CIDEr-D of one prediction against one reference each.

    Returns ``{"bleu4", "rouge_l", "cider"}`` (corpus values; CIDEr on its usual 0-10 scale)
    plus ``"per_record"``: ``{"bleu4", "rouge_l", "cider"}`` lists in input order. CIDEr's
    IDF comes from the evaluated references, so a corpus of one caption scores 0. Empty
    captions (after tokenising) on either side score 0, never raise.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    empty = {"bleu4": [], "rouge_l": [], "cider": []}
    if not predictions:
        return {"bleu4": 0.0, "rouge_l": 0.0, "cider": 0.0, "per_record": empty}
    logger.info("scoring %d captions (pycocoevalcap's ROUGE-L is pure Python: minutes for 45k)", len(predictions))
    res = {i: [tokenize_caption(p)] for i, p in enumerate(predictions)}
    gts = {i: [tokenize_caption(r)] for i, r in enumerate(references)}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    if any(ref[0] for ref in gts.values()):
        cider, cider_each = Cider().compute_score(gts, res)
    else:  # no reference n-gram at all: every CIDEr similarity is 0 (pycocoevalcap fails on max([]))
        cider, cider_each = 0.0, [0.0] * len(predictions)
    return {
        "bleu4": float(bleu[3]),
        "rouge_l": float(rouge),
        "cider": float(cider),
        "per_record": {
            "bleu4": [float(v) for v in bleu_each[3]],
            "rouge_l": [float(v) for v in rouge_each],
            "cider": [float(v) for v in cider_each],
        },
    }
