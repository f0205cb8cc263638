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

Leak-free splits (``assign_grouped``): when a dataset's images carry a group (a video or
case id from the source's ``group_by`` or its table), whole groups are placed instead of
images, so frames of one video never straddle two splits. The per-category targets are
the same ``allocate`` counts; groups (an ungrouped image is a group of one) are taken in
sha256 order of (seed, dataset, group) and each goes to the split where most of its
images still fit its categories' remaining targets (ties: the split with the most room
left, then train, val, test). Counts then follow 60/10/30 at the granularity of groups.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from colonpipe.coloninst import SPLITS, check_ratios


@dataclass(frozen=True)
class SplitItem:
    """One image to place: its id, dataset, primary category and official split (or None)."""

    image: str
    dataset: str
    category: str
    official: str | None = None
    group: str | None = None  # video / case id; frames sharing it are split together


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
    items = list(items)
    grouped_datasets = {i.dataset for i in items if i.group is not None and i.official is None}
    by_dataset: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        if item.official is not None:
            if item.official not in SPLITS:
                raise ValueError(f"{item.image}: unknown split {item.official!r} (expected {SPLITS})")
            out[item.image] = item.official
        elif item.dataset in grouped_datasets:
            by_dataset[item.dataset].append(item)
        else:
            groups[(item.dataset, item.category)].append(item.image)
    for dataset in sorted(by_dataset):
        out.update(assign_grouped(by_dataset[dataset], ratios, seed=seed))
    for key in sorted(groups):
        images = sorted(groups[key], key=lambda im: (_order_key(seed, im), im))
        start = 0
        for split, count in zip(SPLITS, allocate(len(images), ratios)):
            for image in images[start : start + count]:
                out[image] = split
            start += count
    return out


def _best_split(counts: Counter, remaining: dict[str, list[int]]) -> int:
    """Index of the split where most of a group's images fit (module docstring's tie rules)."""
    def score(s: int) -> tuple[int, int, int]:
        fit = sum(min(n, max(remaining[c][s], 0)) for c, n in counts.items())
        room = sum(remaining[c][s] for c in counts)
        return fit, room, -s

    return max(range(len(SPLITS)), key=score)


def assign_grouped(items: Sequence[SplitItem], ratios: Sequence[float], *, seed: int) -> dict[str, str]:
    """``{image: split}`` for one dataset's items, whole groups at a time (module docstring)."""
    members: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        members[item.group if item.group is not None else f"\x00{item.image}"].append(item)
    per_category = Counter(item.category for item in items)
    remaining = {c: allocate(n, ratios) for c, n in sorted(per_category.items())}
    dataset = items[0].dataset if items else ""
    order = sorted(members, key=lambda g: (_order_key(seed, f"{dataset}\x1f{g}"), g))
    out: dict[str, str] = {}
    for group in order:
        counts = Counter(item.category for item in members[group])
        s = _best_split(counts, remaining)
        for c, n in counts.items():
            remaining[c][s] -= n
        for item in members[group]:
            out[item.image] = SPLITS[s]
    return out
