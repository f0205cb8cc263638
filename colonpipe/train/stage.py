"""What the ``align`` and ``finetune`` stage scripts call: launch, track, train (their command
lines live in ``stages/``).

``train_stage`` re-runs the stage under torchrun / the deepspeed launcher when
``num_processes > 1`` (see :mod:`colonpipe.train.launch`); inside the (single or rank) process
it opens the stage's MLflow run on rank 0 only and runs :func:`run_training`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

from colonpipe.params import TrainParams, flatten
from colonpipe.tracking.runs import stage_run
from colonpipe.train.dataset import split_files
from colonpipe.train.launch import dist_info, maybe_relaunch
from colonpipe.train.trainer import TrainPaths, run_training

logger = logging.getLogger(__name__)


def stage_inputs(paths: TrainPaths) -> list[str]:
    """The paths a training stage reads, as its lineage records them: data files, base, init."""
    data = [f for files in paths.files_by_split.values() for f in files]
    return [str(x) for x in (*data, paths.base, paths.init_from) if x is not None]


def _tracking(stage: str, p: TrainParams, paths: TrainPaths, *, enabled: bool):
    """The stage's MLflow run on rank 0 (a ``RunLogger``), else a context yielding ``None``."""
    if not enabled:
        return contextlib.nullcontext(None)
    return stage_run(stage, params=flatten({stage: dataclasses.asdict(p)}), inputs=stage_inputs(paths))


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


class TrainInputError(ValueError):
    """The files a stage would train on cannot be found; the message names them."""


def train_paths(args, params: TrainParams) -> TrainPaths:
    """``TrainPaths`` from a stage script's arguments (``--base``, ``--data``, ``--image-root``,
    ``--out-dir``, optional ``--init-from``) and the files of ``params.train_splits``."""
    try:
        splits = split_files(args.data, params.train_splits)
    except ValueError as exc:
        raise TrainInputError(str(exc)) from None
    return TrainPaths(base=args.base, data=args.data, image_root=args.image_root, out_dir=args.out_dir,
                      init_from=getattr(args, "init_from", None), splits=splits)
