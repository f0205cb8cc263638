"""Split N input positions into K shards.

Shard ``s`` of ``K`` holds every position ``p`` with ``p % K == s`` (strided, not
contiguous): instruction files are grouped by source dataset, so striding gives each
worker the same mix of prompt lengths and image sizes and the workers finish together.
"""

from __future__ import annotations


def shard_positions(num_records: int, num_shards: int, shard: int) -> list[int]:
    """Positions (0-based indices into the input list) that belong to ``shard``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
    if num_records < 0:
        raise ValueError(f"num_records must be >= 0, got {num_records}")
    return list(range(shard, num_records, num_shards))


def split_positions(num_records: int, num_shards: int) -> list[list[int]]:
    """All shards at once: every position in ``range(num_records)`` appears exactly once."""
    return [shard_positions(num_records, num_shards, s) for s in range(num_shards)]
