"""Train/val/test assignment of images.

Rule (spec section 1):
- An image whose source has an official split keeps it.
- Every other image is split per (dataset, primary category) by ``ratios`` (60/10/30).
  The primary category is the image's CLS category, so all records of one image land in
  one split.

How the counts are chosen (``allocate``):
1. Largest remainder: each split gets ``floor(n * ratio)``; the images left over go to the
   splits with the largest fractional parts (ties: larger ratio first, then split order).
2. Small groups stay sensible: splits are ranked by ratio (train, test, val for 60/10/30);
   the k-th ranked split is guaranteed one image once the group has more than k images,
   taking it from the split with most images. So 1 image -> train; 2 -> train+test;
   3 -> one each; large groups are unaffected.

Which images go where: images of a group are ordered by sha256 of (seed, image id) and cut
in train, val, test order. The result depends only on the seed and the set of images, never
on input order.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from colonpipe.data.manifest import SPLITS


@dataclass(frozen=True)
class SplitItem:
    """One image to place: its id, dataset, primary category and official split (or None)."""

    image: str
    dataset: str
    category: str
    official: str | None = None


def check_ratios(ratios: Sequence[float]) -> list[str]:
    """Problems with a train/val/test ratio triple (empty list when fine)."""
    if len(ratios) != len(SPLITS):
        return [f"split_ratios needs {len(SPLITS)} values (train/val/test), got {len(ratios)}"]
    problems = []
    if any(r < 0 for r in ratios):
        problems.append(f"split_ratios must be non-negative, got {list(ratios)}")
    if not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        problems.append(f"split_ratios must sum to 1, got {sum(ratios):.6g}")
    return problems


def allocate(n: int, ratios: Sequence[float]) -> list[int]:
    """Split ``n`` items into per-split counts (see module docstring); counts sum to ``n``."""
    problems = check_ratios(ratios)
    if problems:
        raise ValueError("; ".join(problems))
    exact = [n * r for r in ratios]
    counts = [math.floor(e + 1e-9) for e in exact]
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), -ratios[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    ranked = sorted((i for i in range(len(ratios)) if ratios[i] > 0), key=lambda i: (-ratios[i], i))
    for k, i in enumerate(ranked):
        if counts[i] == 0 and n > k:
            donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _order_key(seed: int, image: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{image}".encode("utf-8")).digest()


def assign_splits(items: Iterable[SplitItem], ratios: Sequence[float], *, seed: int) -> dict[str, str]:
    """``{image id: split}`` for every item: official split kept, the rest split per group.

    Raises ``ValueError`` for an official split outside ``train/val/test``.
    """
    out: dict[str, str] = {}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in items:
        if item.official is not None:
            if item.official not in SPLITS:
                raise ValueError(f"{item.image}: unknown split {item.official!r} (expected {SPLITS})")
            out[item.image] = item.official
        else:
            groups[(item.dataset, item.category)].append(item.image)
    for key in sorted(groups):
        images = sorted(groups[key], key=lambda im: (_order_key(seed, im), im))
        start = 0
        for split, count in zip(SPLITS, allocate(len(images), ratios)):
            for image in images[start : start + count]:
                out[image] = split
            start += count
    return out
