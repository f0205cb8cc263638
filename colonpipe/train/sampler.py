"""A seeded, rank-sharded, resumable sampler (what ``DistributedSampler`` lacks: a start offset)."""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShardSampler(Sampler[int]):
    """Per-epoch seeded permutation of ``range(n)``, padded by wrap-around to a multiple of
    ``world_size``; rank ``r`` takes every ``world_size``-th index from position ``r``.
    ``set_epoch(epoch, skip=k)`` starts the next pass after this rank's first ``k`` samples."""

    def __init__(self, n: int, *, rank: int, world_size: int, seed: int, shuffle: bool = True):
        if n < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.rank, self.world_size, self.seed, self.shuffle = n, rank, world_size, seed, shuffle
        self.per_rank = math.ceil(n / world_size)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank :: self.world_size][self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip)
