import pytest

from colonpipe.infer.shards import shard_positions, split_positions


@pytest.mark.parametrize("n,k", [(0, 1), (1, 3), (10, 1), (10, 3), (11, 4), (7, 7), (5, 8)])
def test_every_position_exactly_once(n, k):
    shards = split_positions(n, k)
    flat = [p for s in shards for p in s]
    assert sorted(flat) == list(range(n))
    assert len(flat) == len(set(flat))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_strided_assignment():
    assert shard_positions(10, 3, 1) == [1, 4, 7]


@pytest.mark.parametrize("n,k,s", [(5, 0, 0), (5, 2, 2), (5, 2, -1), (-1, 2, 0)])
def test_bad_arguments(n, k, s):
    with pytest.raises(ValueError):
        shard_positions(n, k, s)
