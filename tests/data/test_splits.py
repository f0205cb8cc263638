"""The split rule: official splits kept, otherwise 60/10/30 per (dataset, category)."""

from collections import Counter

import pytest

from colonpipe.data.splits import SplitItem, allocate, assign_splits

RATIOS = [0.6, 0.1, 0.3]


@pytest.mark.parametrize(
    "n, expected",
    [(0, [0, 0, 0]), (1, [1, 0, 0]), (2, [1, 0, 1]), (3, [1, 1, 1]), (4, [2, 1, 1]),
     (10, [6, 1, 3]), (100, [60, 10, 30]), (7, [4, 1, 2])],
)
def test_allocate_largest_remainder_with_small_group_minimums(n, expected):
    assert allocate(n, RATIOS) == expected


def test_allocate_counts_sum_and_track_ratios():
    for n in range(0, 500):
        counts = allocate(n, RATIOS)
        assert sum(counts) == n
        if n >= 10:
            for c, r in zip(counts, RATIOS):
                assert abs(c - n * r) <= 1.0


@pytest.mark.parametrize("ratios", [[0.5, 0.5], [0.7, 0.1, 0.3], [1.2, -0.1, -0.1]])
def test_allocate_rejects_bad_ratios(ratios):
    with pytest.raises(ValueError, match="split_ratios"):
        allocate(10, ratios)


def _items(dataset, category, n, official=None):
    return [SplitItem(f"{dataset}/{category}/{i}.png", dataset, category, official) for i in range(n)]


def test_proportions_per_category_and_official_kept():
    items = _items("A", "polyp", 50) + _items("A", "ulcer", 20) + _items("B", "polyp", 3)
    items += _items("C", "polyp", 8, official="val")
    split = assign_splits(items, RATIOS, seed=0)
    assert len(split) == len(items)
    by_group = Counter((i.dataset, i.category, split[i.image]) for i in items)
    assert [by_group[("A", "polyp", s)] for s in ("train", "val", "test")] == [30, 5, 15]
    assert [by_group[("A", "ulcer", s)] for s in ("train", "val", "test")] == [12, 2, 6]
    assert [by_group[("B", "polyp", s)] for s in ("train", "val", "test")] == [1, 1, 1]
    assert all(split[i.image] == "val" for i in items if i.dataset == "C")


def test_assignment_is_seeded_and_order_independent():
    items = _items("A", "polyp", 40)
    first = assign_splits(items, RATIOS, seed=3)
    assert assign_splits(list(reversed(items)), RATIOS, seed=3) == first
    assert assign_splits(items, RATIOS, seed=4) != first


def test_unknown_official_split_is_an_error():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        assign_splits(_items("A", "polyp", 1, official="dev"), RATIOS, seed=0)
