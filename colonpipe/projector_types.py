"""The projector-type grammar, without torch (so params can check a type before any model is built).

- ``mlp2x_gelu`` and ``linear`` (``PLAIN_TYPES``): one image token per vision patch.
- ``ppc_<a>_<b>_..._<z>``: ColonGPT's multigranularity pyramid, strictly decreasing levels >= 1,
  the first at most the patch grid; ``a*a + b*b + ...`` image tokens.

The modules themselves are in :mod:`colonpipe.model.projector`.
"""

from __future__ import annotations

import re

_PPC = re.compile(r"^ppc(?:_\d+)+$")
PLAIN_TYPES = ("mlp2x_gelu", "linear")


def pyramid_levels(projector_type: str) -> list[int] | None:
    """Levels of a ``ppc_*`` type (``[14, 7, 1]``); ``None`` for the per-patch types.

    Raises ``ValueError`` for an unknown type or levels that are not strictly decreasing.
    """
    if projector_type in PLAIN_TYPES:
        return None
    if not _PPC.match(projector_type):
        raise ValueError(
            f"unknown projector_type {projector_type!r}: expected 'ppc_<a>_<b>_..._<z>' "
            f"(e.g. ppc_14_7_1) or one of {list(PLAIN_TYPES)}"
        )
    levels = [int(x) for x in projector_type.split("_")[1:]]
    if any(lv < 1 for lv in levels) or any(a <= b for a, b in zip(levels, levels[1:])):
        raise ValueError(f"projector_type {projector_type!r}: levels must be >= 1 and strictly decreasing")
    return levels


def num_image_tokens(projector_type: str, grid: int) -> int:
    """Image tokens the projector emits for a ``grid x grid`` patch grid.

    ``num_image_tokens("ppc_14_7_1", 27) == 246``; ``num_image_tokens("mlp2x_gelu", 27) == 729``.
    """
    levels = pyramid_levels(projector_type)
    if levels is None:
        return grid * grid
    if levels[0] > grid:
        raise ValueError(f"projector_type {projector_type!r}: level {levels[0]} exceeds the {grid}x{grid} patch grid")
    return sum(lv * lv for lv in levels)
