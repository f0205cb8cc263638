"""What the ``align`` and ``finetune`` stage scripts call: launch, track, train.

``train_stage`` re-runs the stage under torchrun / the deepspeed launcher when
``num_processes > 1`` (see :mod:`colonpipe.train.launch`); inside the (single or rank) process
it opens the stage's MLflow run on rank 0 only and runs :func:`run_training`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from colonpipe.params import ParamsError, TrainParams, flatten, load_section
from colonpipe.train.dataset import split_files
from colonpipe.train.launch import add_launcher_args, dist_info, maybe_relaunch
from colonpipe.train.trainer import TrainPaths, run_training

logger = logging.getLogger(__name__)


def _tracking(stage: str, p: TrainParams, paths: TrainPaths, *, enabled: bool):
    """The stage's MLflow run on rank 0 (a ``RunLogger``), else a context yielding ``None``."""
    if not enabled:
        return contextlib.nullcontext(None)
    from colonpipe.tracking.runs import stage_run

    data = [f for files in paths.files_by_split.values() for f in files]
    inputs = [str(x) for x in (*data, paths.base, paths.init_from) if x is not None]
    return stage_run(stage, params=flatten({stage: dataclasses.asdict(p)}), inputs=inputs)


def train_stage(stage: str, p: TrainParams, paths: TrainPaths, *, script_argv: list[str],
                track: bool = True) -> tuple[int, dict[str, Any]]:
    """Train one stage; returns ``(exit code, metrics)`` (metrics only in the rank-0 process).

    ``script_argv`` is the stage's own command line (script path first), re-run on every rank
    when a launcher is needed; the launching process then only returns the launcher's exit code.
    """
    rc = maybe_relaunch(script_argv, num_processes=p.num_processes, hostfile=p.hostfile,
                        deepspeed=p.deepspeed.enabled)
    if rc is not None:
        if rc != 0:
            logger.error("%s: launcher exited with %d", stage, rc)
        return rc, {}
    with _tracking(stage, p, paths, enabled=track and dist_info().is_main) as run_logger:
        metrics = run_training(p, paths, stage=stage, run_logger=run_logger)
    return 0, metrics


def stage_main(stage: str, script: str, argv: list[str], *, doc: str, data_help: str,
               init_from: bool) -> int:
    """The CLI shared by ``stages/align.py`` and ``stages/finetune.py``: parse paths, load the
    stage's params section, train. ``script`` is the stage file, re-run by a launcher."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="base model folder (stage base)")
    parser.add_argument("--data", type=Path, required=True, help=data_help)
    parser.add_argument("--image-root", type=Path, required=True, help="image folder or image_roots.json")
    if init_from:
        parser.add_argument("--init-from", type=Path, required=True, help="aligned stage-1 output (its projector)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    add_launcher_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section(stage, args.params)
    except ParamsError as exc:
        logging.getLogger(f"stages.{stage}").error("%s", exc)
        return 1
    try:
        splits = split_files(args.data, params.train_splits)
    except ValueError as exc:
        logging.getLogger(f"stages.{stage}").error("%s", exc)
        return 1
    paths = TrainPaths(base=args.base, data=args.data, image_root=args.image_root, out_dir=args.out_dir,
                       init_from=getattr(args, "init_from", None), splits=splits)
    rc, _ = train_stage(stage, params, paths, script_argv=[script, *argv])
    return rc
