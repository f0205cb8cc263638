"""Check a ColonINST ``Json-file`` tree (e.g. the official release) against its images.

    colonpipe check-data path/to/Json-file --image-root path/to/Positive-images [--report r.json]

Problems found (``PROBLEM_KINDS``):
- ``bad_json``: a file that is not valid JSON or not a JSON list;
- ``bad_shape``: a record that is not ``{"id", "image", "conversations": [human, gpt]}``
  with a human turn starting ``<image>\\n`` and ``image`` equal to the id's file stem;
- ``missing_image``: ``image_root/id`` does not exist (or escapes the root);
- ``bad_box``: malformed box text in a REG question or a REC answer;
- ``unknown_template``: a question matching none of its task's 5 templates ({BOX} and
  {CAT} match anything); in the 3-task file the task is whichever of CLS/REG/REC matches;
- ``duplicate``: the same record twice in one file;
- ``split_overlap``: one image id in more than one of train/val/test.
Files named other than ``ColonINST-<split>-<task>.json`` are checked against all tasks and
listed under ``unknown_files``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from colonpipe.data.images import ImageError, ImageResolver
from colonpipe import atomic
from colonpipe.coloninst import (
    COMBINED_TASK, HUMAN_PREFIX, STAGE2_TASKS, TASKS, BoxTextError, ColonINSTError, parse_box, parse_instruction_file,
    question_text, read_records,
)
from colonpipe.data.templates import match_template

logger = logging.getLogger(__name__)

PROBLEM_KINDS = ("bad_json", "bad_shape", "missing_image", "bad_box", "unknown_template", "duplicate", "split_overlap")
_CANDIDATES = {COMBINED_TASK: STAGE2_TASKS, None: TASKS}


class _Report:
    """Problem counts plus the first ``max_examples`` messages of each kind."""

    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples
        self.counts: dict[str, int] = {k: 0 for k in PROBLEM_KINDS}
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append(message)


def shape_error(rec: Any) -> str | None:
    """Why ``rec`` is not a well-formed single-turn record, or None."""
    if not isinstance(rec, dict):
        return f"record is a {type(rec).__name__}, not an object"
    if not isinstance(rec.get("id"), str) or not isinstance(rec.get("image"), str):
        return "missing or non-string 'id'/'image'"
    conv = rec.get("conversations")
    if not isinstance(conv, list) or len(conv) != 2 or not all(isinstance(t, dict) for t in conv):
        return "'conversations' must be a list of 2 turns"
    if [t.get("from") for t in conv] != ["human", "gpt"]:
        return f"turns must be from human, gpt; got {[t.get('from') for t in conv]}"
    if not all(isinstance(t.get("value"), str) for t in conv):
        return "turn values must be strings"
    if not conv[0]["value"].startswith(HUMAN_PREFIX):
        return "human turn does not start with '<image>\\n'"
    if rec["image"] != PurePosixPath(rec["id"]).stem:
        return f"'image' {rec['image']!r} is not the stem of id {rec['id']!r}"
    return None


def record_task(task_hint: str | None, question: str) -> tuple[str, dict[str, str]] | None:
    """``(task, template fields)`` of a question (no ``<image>\\n``): the file's task, or the
    first of CLS/REG/REC (3-task file) or of all four (unknown file name) whose template matches."""
    for task in _CANDIDATES.get(task_hint, (task_hint,)):
        found = match_template(task, question)
        if found is not None:
            return task, found[1]
    return None


def _check_text(task_hint: str | None, question: str, answer: str, where: str, report: _Report) -> None:
    """Template and box checks for one record's question/answer."""
    matched = record_task(task_hint, question)
    if matched is None:
        candidates = _CANDIDATES.get(task_hint, (task_hint,))
        report.add("unknown_template", f"{where}: question {question!r} matches no {'/'.join(candidates)} template")
        return
    task, fields = matched
    texts = [fields["box"]] if task == "reg" else [answer] if task == "rec" else []
    for text in texts:
        try:
            parse_box(text.strip())
        except BoxTextError as exc:
            report.add("bad_box", f"{where}: {exc}")


def _load_list(path: Path, rel: str, report: _Report) -> list | None:
    try:
        return read_records(path)
    except ColonINSTError as exc:
        report.add("bad_json", str(exc).replace(str(path), rel, 1))
        return None


def _image_exists(record_id: str, resolver: ImageResolver | None, cache: dict[str, bool]) -> bool:
    if resolver is None:
        return True
    if record_id not in cache:
        try:
            cache[record_id] = resolver.resolve(record_id).is_file()
        except ImageError:
            cache[record_id] = False
    return cache[record_id]


def _check_file(path: Path, rel: str, ctx: dict[str, Any], report: _Report) -> dict[str, Any]:
    """Check every record of one JSON file; returns the file's summary."""
    split, task = parse_instruction_file(path.name) or (None, None)
    records = _load_list(path, rel, report)
    if records is None:
        return {"records": 0, "split": split, "task": task}
    seen: set[str] = set()
    for i, rec in enumerate(tqdm(records, desc=rel, unit="rec", disable=None, mininterval=2)):
        where = f"{rel}[{i}]"
        problem = shape_error(rec)
        if problem is not None:
            report.add("bad_shape", f"{where}: {problem}")
            continue
        where = f"{where} {rec['id']}"
        key = json.dumps(rec, sort_keys=True, ensure_ascii=False)
        if key in seen:
            report.add("duplicate", f"{where}: same record appears earlier in the file")
        seen.add(key)
        question = question_text(rec["conversations"][0]["value"])
        _check_text(task, question, rec["conversations"][1]["value"], where, report)
        if not _image_exists(rec["id"], ctx["resolver"], ctx["exists"]):
            report.add("missing_image", f"{where}: image not found under the image root")
        if split is not None:
            ctx["splits"][rec["id"]].add(split)
    return {"records": len(records), "split": split, "task": task}


def check_coloninst(json_dir: Path, image_root: Path | None, *, max_examples: int = 20) -> dict[str, Any]:
    """Check every ``*.json`` under ``json_dir``; ``image_root`` is a folder (``root/id``),
    a ``{dataset: root}`` JSON, or None to skip the image check. Returns the report dict
    (``ok``, ``problems`` counts per kind, ``examples``, ``files``, ``unknown_files``)."""
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise FileNotFoundError(f"{json_dir}: not a folder of ColonINST JSON files")
    resolver = ImageResolver.from_path(image_root) if image_root is not None else None
    ctx: dict[str, Any] = {"resolver": resolver, "exists": {}, "splits": defaultdict(set)}
    report = _Report(max_examples)
    files = {}
    for path in sorted(p for p in json_dir.rglob("*.json") if not p.name.startswith(".")):
        rel = path.relative_to(json_dir).as_posix()
        files[rel] = _check_file(path, rel, ctx, report)
    for record_id in sorted(ctx["splits"]):
        if len(ctx["splits"][record_id]) > 1:
            report.add("split_overlap", f"{record_id}: in splits {sorted(ctx['splits'][record_id])}")
    return {
        "json_dir": str(json_dir),
        "image_root": None if image_root is None else str(image_root),
        "ok": not any(report.counts.values()),
        "records": sum(f["records"] for f in files.values()),
        "problems": dict(report.counts),
        "examples": {k: report.examples[k] for k in PROBLEM_KINDS if report.examples[k]},
        "files": files,
        "unknown_files": [rel for rel, f in files.items() if f["task"] is None],
    }


def _print_summary(report: dict[str, Any]) -> None:
    print(f"checked {len(report['files'])} file(s), {report['records']} record(s) in {report['json_dir']}")
    for rel, info in report["files"].items():
        print(f"  {rel}: {info['records']} records" + ("" if info["task"] else " (unknown file name)"))
    for kind, n in report["problems"].items():
        if n:
            print(f"  PROBLEM {kind}: {n}")
            for msg in report["examples"].get(kind, [])[:5]:
                print(f"    {msg}")
    print("OK" if report["ok"] else "FAILED: problems found")


def main(argv: list[str] | None = None) -> int:
    """``colonpipe check-data``; exit 0 when clean, 1 when problems, 2 on unusable input."""
    parser = argparse.ArgumentParser(prog="colonpipe check-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_dir", type=Path, help="the Json-file folder (or any folder of ColonINST JSON)")
    parser.add_argument("--image-root", type=Path, help="Positive-images folder or {dataset: root} JSON")
    parser.add_argument("--report", type=Path, help="also write the full report here as JSON")
    parser.add_argument("--max-examples", type=int, default=20, help="messages kept per problem kind")
    args = parser.parse_args(argv)
    try:
        report = check_coloninst(args.json_dir, args.image_root, max_examples=args.max_examples)
    except (FileNotFoundError, ImageError) as exc:
        print(f"error: {exc}")
        return 2
    _print_summary(report)
    if args.report is not None:
        atomic.write_json(args.report, report)
    return 0 if report["ok"] else 1
