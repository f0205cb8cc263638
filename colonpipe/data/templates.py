"""The ColonINST question templates (4 tasks x 5): rendering and matching.

Contract:
- ``TEMPLATES[task]`` holds the spec's five question strings, verbatim, in spec order.
  ``{BOX}`` (REG) is replaced by box text (``colonpipe.coloninst.format_box``), ``{CAT}`` (REC)
  by the bare category name.
- ``template_index`` draws a template from a stable hash of (seed, task, id, category), so
  the draw is seeded yet independent of the order records are produced in.
"""

from __future__ import annotations

import hashlib
import re

TEMPLATES: dict[str, tuple[str, ...]] = {
    "cls": (
        "Categorize the object.",
        "Determine the object's category.",
        "Identify the category of the object.",
        "Classify the object's category.",
        "Assign the object to its corresponding category.",
    ),
    "reg": (
        "What category does {BOX} belong to?",
        "Can you tell me the category of {BOX}?",
        "Could you provide the category for {BOX}?",
        "Please specify the category of {BOX}.",
        "What is the category for {BOX}?",
    ),
    "rec": (
        "Where is the location of {CAT}?",
        "Could you give the position of {CAT}?",
        "Where is {CAT} located?",
        "Could you specify the location of {CAT}?",
        "Please specify the coordinates of {CAT}.",
    ),
    "cap": (
        "Describe what you see in the image.",
        "Interpret what the image shows.",
        "Detail the visual elements in the image.",
        "Explain the image's visuals thoroughly.",
        "Offer a thorough explanation of the image.",
    ),
}


def template_index(seed: int, task: str, record_id: str, category: str) -> int:
    """Index in ``TEMPLATES[task]`` for one record: sha256 of (seed, task, id, category)."""
    key = "\x1f".join((str(seed), task, record_id, category)).encode("utf-8")
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "big") % len(TEMPLATES[task])


def render_question(task: str, index: int, *, box: str | None = None, category: str | None = None) -> str:
    """Template ``index`` of ``task`` with ``{BOX}``/``{CAT}`` filled (no ``<image>`` prefix)."""
    text = TEMPLATES[task][index]
    if "{BOX}" in text:
        if box is None:
            raise ValueError(f"{task} template needs box text")
        text = text.replace("{BOX}", box)
    if "{CAT}" in text:
        if category is None:
            raise ValueError(f"{task} template needs a category")
        text = text.replace("{CAT}", category)
    return text


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{BOX\}|\{CAT\})", template)
    out = []
    for part in parts:
        if part == "{BOX}":
            out.append(r"(?P<box>.+?)")
        elif part == "{CAT}":
            out.append(r"(?P<cat>.+?)")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out), re.DOTALL)


_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    task: tuple(_pattern(t) for t in texts) for task, texts in TEMPLATES.items()
}


def match_template(task: str, question: str) -> tuple[int, dict[str, str]] | None:
    """Which template of ``task`` produced ``question`` (without ``<image>\\n``)?

    Returns ``(index, {"box": ...} or {"cat": ...} or {})`` or ``None``; ``{BOX}`` and
    ``{CAT}`` match any non-empty text, so box text is validated separately (``parse_box``).
    """
    for i, pat in enumerate(_PATTERNS[task]):
        m = pat.fullmatch(question)
        if m is not None:
            return i, {k: v for k, v in m.groupdict().items() if v is not None}
    return None
