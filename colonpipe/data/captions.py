"""The captions input: a JSONL file of ``{"image": <record id>, "caption": "..."}`` lines.

Contract: ``load_captions(path)`` returns ``({record id: caption}, problems)``. Blank lines
are ignored; a line that is not a JSON object with non-empty string ``image`` and
``caption`` is reported (``malformed_caption``) and skipped; a second caption for the same
image is reported (``duplicate_caption``) and the first one kept. Captions are stripped of
surrounding whitespace and otherwise kept verbatim.
"""

from __future__ import annotations

import json
from pathlib import Path

from colonpipe.data.sources.common import Problem


def _parse(line: str) -> tuple[str, str]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    image, caption = rec.get("image"), rec.get("caption")
    if not isinstance(image, str) or not image.strip():
        raise ValueError("'image' must be a non-empty string")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("'caption' must be a non-empty string")
    return image.strip(), caption.strip()


def load_captions(path: Path) -> tuple[dict[str, str], list[Problem]]:
    """Read a captions JSONL file; ``OSError`` if it cannot be opened."""
    captions: dict[str, str] = {}
    problems: list[Problem] = []
    shown = Path(path).as_posix()
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                image, caption = _parse(line)
            except ValueError as exc:
                problems.append(Problem(shown, "malformed_caption", f"line {n}: {exc}"))
                continue
            if image in captions:
                problems.append(Problem(shown, "duplicate_caption", f"line {n}: second caption for {image}; kept the first"))
                continue
            captions[image] = caption
    return captions, problems
