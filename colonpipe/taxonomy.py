"""ColonINST category names: the positive child categories that CLS answers come from.

Contract:
- ``POSITIVE_CHILDREN`` lists canonical names: lower-case, words separated by single spaces
  (``accessory tool``, not ``accessory_tool``). An ``ingest`` category mapping must target one
  of them (or a name listed in ``ingest.extra_categories``).
- The list holds the specification's examples plus the other labels the 19 source datasets
  use for positive findings, anatomy, treatment and bowel preparation. Names this list lacks
  are accepted through ``extra_categories`` rather than by editing code.
- ``canonical(label)`` is the normal form (case, ``_``/``-`` and spacing folded); it is used to
  suggest the right spelling in error messages, never to accept a misspelt mapping silently.
"""

from __future__ import annotations

import re

ROOTS = ("pathological findings", "anatomical structures", "clinical treatment", "bowel preparation")

# root -> children (ColonINST child categories; positive images only).
CHILDREN_BY_ROOT: dict[str, tuple[str, ...]] = {
    "pathological findings": (
        "polyp",
        "adenoma",
        "hyperplastic lesion",
        "high grade adenoma",
        "low grade adenoma",
        "serrated lesion",
        "sessile serrated lesion",
        "traditional serrated adenoma",
        "invasive carcinoma",
        "colorectal cancer",
        "high grade dysplasia",
        "suspicious precancerous lesion",
        "ulcer",
        "erosion",
        "erythema",
        "angiectasia",
        "lymphangiectasia",
        "blood fresh",
        "blood hematin",
        "colon diverticula",
        "hemorrhoids",
        "inflammation",
        "ulcerative colitis",
        "foreign body",
    ),
    "anatomical structures": (
        "cecum",
        "ileum",
        "ileocecal valve",
        "retroflex rectum",
        "appendiceal orifice",
    ),
    "clinical treatment": (
        "accessory tool",
        "dyed lifted polyp",
        "dyed resection margin",
        "resected polyp",
        "resection margin",
    ),
    "bowel preparation": (
        "bbps 0",
        "bbps 1",
        "bbps 2",
        "bbps 3",
        "impacted stool",
    ),
}

POSITIVE_CHILDREN: tuple[str, ...] = tuple(c for children in CHILDREN_BY_ROOT.values() for c in children)
ROOT_OF: dict[str, str] = {c: root for root, children in CHILDREN_BY_ROOT.items() for c in children}


def canonical(label: str) -> str:
    """Fold a label to the canonical spelling: lower-case, ``_``/``-`` to spaces, single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", label)).strip().lower()


def check_targets(targets: list[str], extra: list[str]) -> list[str]:
    """Problems with mapping targets that are neither ColonINST children nor in ``extra``."""
    known = set(POSITIVE_CHILDREN) | set(extra)
    problems = []
    for target in targets:
        if target in known:
            continue
        hint = canonical(target)
        tip = f" (did you mean {hint!r}?)" if hint in known else " (add it to ingest.extra_categories)"
        problems.append(f"category target {target!r} is not a ColonINST child category{tip}")
    return problems
