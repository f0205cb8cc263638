"""``colonpipe score FILE...``: score prediction files and print their headline metrics.

The scoring rule is printed first and stored in every result (``"scoring"``): the
reference evaluator's exact rule by default, ``--lenient`` for the stripped form. ``--out``
writes the results at full precision; exit code 1 on a file-level error (named on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from colonpipe.evaluate.metrics import SCORING_RULES
from colonpipe.coloninst import SPLITS, TASKS, ColonINSTError, instruction_path
from colonpipe.evaluate.report import format_table, write_json
from colonpipe.evaluate.score import score_predictions, train_baselines

def task_from_name(path: Path) -> str | None:
    """The task a file's name ends in (``test_pred_rec.json``, ``ColonINST-test-rec.json``,
    ``my_rec.json``), or None: what ``colonpipe score`` assumes when ``--task`` is not given."""
    stem = Path(path).stem.lower()
    for task in TASKS:
        if stem.endswith((f"_{task}", f"-{task}")):
            return task
    return None


def _split_of(path: Path) -> str | None:
    name = Path(path).name.lower()
    return next((s for s in SPLITS if name.startswith(s + "_")), None)


def _source_for(path: Path, task: str, args: argparse.Namespace) -> Path | None:
    if args.source is not None:
        return args.source
    if args.source_dir is None:
        return None
    split = _split_of(path)
    if split is None:
        raise ColonINSTError(f"{path}: cannot tell the split from the name (want {{split}}_pred_{{task}}.json)")
    return instruction_path(args.source_dir, split, task)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="colonpipe score", description="Score ColonINST prediction files.")
    p.add_argument("files", nargs="+", type=Path, help="prediction JSON files (reference format)")
    p.add_argument("--task", choices=TASKS, help="task of every file (default: from each file name)")
    p.add_argument("--source", type=Path, help="source instruction JSON to check the count (one file only)")
    p.add_argument("--source-dir", type=Path, help="Json-file dir: {split}/ColonINST-{split}-{task}.json")
    p.add_argument("--train", type=Path, help="stage-2 train JSON: fits the majority/mean-box baselines")
    p.add_argument("--lenient", action="store_true",
                   help="CLS/REG: also strip outer whitespace (not the reference rule; named in the output)")
    p.add_argument("--out", type=Path, help="write all results (with breakdowns, full precision) to this JSON file")
    p.add_argument("--records", action="store_true", help="keep per-record results in --out")
    return p


def main(argv: list[str] | None = None) -> int:
    """``colonpipe score``: print the rule and a table of headline metrics; 1 on a file-level error."""
    args = _parser().parse_args(argv)
    if args.source is not None and len(args.files) != 1:
        raise SystemExit("colonpipe score: --source needs exactly one prediction file")
    scoring = "lenient" if args.lenient else "reference"
    results = {}
    try:
        baselines = train_baselines(args.train, scoring=scoring) if args.train is not None else None
        for path in args.files:
            task = args.task or task_from_name(path)
            if task is None:
                raise ColonINSTError(f"{path}: cannot tell the task from the name; pass --task")
            source = _source_for(path, task, args)
            results[str(path)] = score_predictions(path, task, source_path=source, baselines=baselines,
                                                   scoring=scoring)
    except ColonINSTError as exc:
        print(f"colonpipe score: error: {exc}", file=sys.stderr)
        return 1
    print(f"scoring: {scoring} (CLS/REG: {SCORING_RULES[scoring]})")
    print(format_table(results))
    if args.out is not None:
        keep = {k: (v if args.records else {x: y for x, y in v.items() if x != "records"}) for k, v in results.items()}
        write_json(args.out, keep)
    return 0
