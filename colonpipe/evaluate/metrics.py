"""Pure scoring functions with the reference ColonINST evaluator's semantics (spec section 5).

Contract, decided once here and relied on everywhere else:

- **CLS / REG** (:func:`normalize_label`, :func:`exact_match`): the literal string
  ``<|endoftext|>`` is removed, the text is lower-cased, then outer whitespace is stripped;
  a prediction is right when the whole normalised string equals the normalised answer.
  The reference inference already strips whitespace from every output, so the strip only
  matters for files whose EOS was glued to trailing spaces (``"polyp <|endoftext|>"``).
- **REC** (:func:`parse_box`, :func:`box_iou`, :func:`rec_iou`): every ``<\\s*(\\d+)\\s*>``
  integer is taken from each side; unless *both* sides give exactly 4, IoU is 0. Boxes are
  ``(x1, y1, x2, y2)`` in inclusive pixels: width ``x2 - x1 + 1``. An intersection with
  width or height <= 0 gives IoU 0 *before* any division. An inverted box (``x2 < x1`` or
  ``y2 < y1``) has inclusive width/height <= 0, so it can never intersect anything and
  scores 0 - the literal formula would divide by a union that can be 0 or negative.
  Whenever the intersection is positive, both boxes have positive area, so the union is
  positive and ``0 < IoU <= 1``. A hit is ``IoU > 0.5`` strictly (:data:`IOU_THRESHOLD`).
- **CAP** (:func:`caption_scores`): BLEU-4, ROUGE-L and CIDEr(-D) from pycocoevalcap's own
  scorers, on text tokenised by :func:`tokenize_caption` (Java's PTBTokenizer is not used).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

logger = logging.getLogger(__name__)

EOS = "<|endoftext|>"
IOU_THRESHOLD = 0.5  # fixed by the reference evaluator; a hit is IoU > 0.5, strictly
BOX_NUMBER = re.compile(r"<\s*(\d+)\s*>")
_CAPTION_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")

Box = tuple[int, int, int, int]


# ----------------------------------------------------------------------------- CLS / REG
def normalize_label(text: str) -> str:
    """``<|endoftext|>`` removed, lower-cased, outer whitespace stripped."""
    return text.replace(EOS, "").lower().strip()


def exact_match(prediction: str, answer: str) -> bool:
    """True when the normalised prediction equals the normalised answer, whole string."""
    return normalize_label(prediction) == normalize_label(answer)


def majority_label(labels: Iterable[str]) -> str | None:
    """Most frequent normalised label; ties go to the alphabetically first. None if empty."""
    counts = Counter(normalize_label(label) for label in labels)
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


# ----------------------------------------------------------------------------- REC
def parse_box(text: str) -> Box | None:
    """The four ``<n>`` integers of ``text`` as ``(x1, y1, x2, y2)``; None unless exactly 4."""
    numbers = BOX_NUMBER.findall(text)
    if len(numbers) != 4:
        return None
    x1, y1, x2, y2 = (int(n) for n in numbers)
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
    pred_box, gt_box = parse_box(prediction), parse_box(answer)
    if pred_box is None or gt_box is None:
        return 0.0
    return box_iou(pred_box, gt_box)


def iou_hit(iou: float) -> bool:
    """The reference's REC accuracy criterion: IoU strictly above 0.5."""
    return iou > IOU_THRESHOLD


def mean_box(boxes: Iterable[Sequence[int]]) -> Box | None:
    """Per-coordinate mean of ``boxes``, rounded half up to integers; None if there are none."""
    boxes = list(boxes)
    if not boxes:
        return None
    sums = [sum(box[i] for box in boxes) for i in range(4)]
    x1, y1, x2, y2 = (math.floor(s / len(boxes) + 0.5) for s in sums)
    return x1, y1, x2, y2


def format_box(box: Sequence[int]) -> str:
    """ColonINST box text, ``{<x1><y1><x2><y2>}``."""
    return "{" + "".join(f"<{int(v)}>" for v in box) + "}"


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
    IDF comes from the evaluated references, so a corpus of one caption scores 0.
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
    cider, cider_each = Cider().compute_score(gts, res)
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
