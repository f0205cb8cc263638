"""Vision-to-language projectors: the ``ppc`` multigranularity pyramid, ``mlp2x_gelu`` and ``linear``.

Projector types (a string, as in the upstream recipe):
- ``ppc_<a>_<b>_..._<z>``: Linear(vision->d) + GELU, reshape to the square patch grid,
  adaptive-average-pool to each level ``a x a``, ``b x b``, ... (largest first), pass every
  level larger than 1x1 through ONE shared 3x3 conv (d->d, padding 1), flatten each level
  row-major, concatenate the levels in the order named, then Linear(d->d).
  ``ppc_14_7_1`` on a 27x27 grid gives 196 + 49 + 1 = 246 tokens.
- ``mlp2x_gelu``: Linear(vision->d), GELU, Linear(d->d); one token per patch.
- ``linear``: Linear(vision->d); one token per patch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from colonpipe.projector_types import pyramid_levels

def _grid_of(num_patches: int) -> int:
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"pyramid projector needs a square patch grid, got {num_patches} patches")
    return grid


class PyramidProjector(nn.Module):
    """The ``ppc`` pyramid; one conv module is shared by every level larger than 1x1."""

    def __init__(self, in_dim: int, out_dim: int, levels: list[int]):
        super().__init__()
        self.levels = list(levels)
        self.linear_in = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        # One conv for all levels: multigranularity features share their filters.
        self.conv = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1) if max(levels) > 1 else None
        self.linear_out = nn.Linear(out_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, grid*grid, in_dim), patches row-major -> (B, sum(level^2), out_dim)."""
        x = self.act(self.linear_in(features))
        batch, num_patches, dim = x.shape
        grid = _grid_of(num_patches)
        if self.levels[0] > grid:
            raise ValueError(f"pyramid level {self.levels[0]} exceeds the {grid}x{grid} patch grid")
        x = x.transpose(1, 2).reshape(batch, dim, grid, grid)
        tokens = []
        for level in self.levels:
            y = F.adaptive_avg_pool2d(x, level)
            if level > 1:
                y = self.conv(y)
            tokens.append(y.flatten(2).transpose(1, 2))  # row-major: (B, level*level, d)
        return self.linear_out(torch.cat(tokens, dim=1))


class MLPProjector(nn.Module):
    """``mlp2x_gelu``: Linear, GELU, Linear, applied per patch."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, N, in_dim) -> (B, N, out_dim)."""
        return self.linear_2(self.act(self.linear_1(features)))


class LinearProjector(nn.Module):
    """``linear``: one Linear applied per patch."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, N, in_dim) -> (B, N, out_dim)."""
        return self.linear(features)


def build_projector(projector_type: str, in_dim: int, out_dim: int) -> nn.Module:
    """The projector module for ``projector_type`` mapping vision width ``in_dim`` to LLM width ``out_dim``."""
    levels = pyramid_levels(projector_type)
    if levels is not None:
        return PyramidProjector(in_dim, out_dim, levels)
    if projector_type == "mlp2x_gelu":
        return MLPProjector(in_dim, out_dim)
    return LinearProjector(in_dim, out_dim)
