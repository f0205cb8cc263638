"""The one owner of a training stage's checkpoints: ``<out>/checkpoints/step-N/`` and ``<out>/final/``.

In the spirit of torchtune's checkpoint client, the recipe hands over its live objects and never
names a file (the layout and the manifest are :mod:`colonpipe.model.checkpoint_files`'s):

- :func:`init_projector`: the verified projector of the previous stage's output.
- :meth:`Checkpointer.resume_point` (collective): rank 0 picks the newest ``step-N`` whose
  manifest verifies and whose fingerprint is this run's (a tampered one is set aside as
  ``step-N.rejected``), the other ranks get the choice by broadcast; then rank 0 drops what this
  run can never resume from.
- :meth:`Checkpointer.load`: the trainables (or DeepSpeed's own state), optimizer and scheduler of a
  chosen checkpoint; returns the saved trainer state.
- :meth:`Checkpointer.save` (collective), in this order: a temp folder beside the target; DeepSpeed
  state (``step-N`` only); the trained weights (collective under ZeRO-3); then on rank 0 the
  plain engine's optimizer and scheduler (``step-N`` only), config and processor,
  ``train_config.json``, ``trainer_state.json``, ``data_report.json`` (``final`` only); the
  manifest (size and sha256 of every file); the atomic swap into place; pruning.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from colonpipe.model import checkpoint_files as ck
from colonpipe.model import trained
from colonpipe.model.trained import base_of

logger = logging.getLogger(__name__)

FINAL = "final"
CHECKPOINTS = "checkpoints"
DATA_REPORT = "data_report.json"


def init_projector(stage_output: Path) -> Path:
    """The projector file of a previous stage's output (``align/final``) to start from.

    An output with a manifest must verify (``ck.verify_dir`` raises naming the file); a bare
    projector file is only logged (it is safetensors: loading it runs no code).
    """
    stage_output = Path(stage_output)
    if (stage_output / ck.MANIFEST).is_file():
        ck.verify_dir(stage_output)
    else:
        logger.warning("%s has no manifest.json: its projector cannot be verified", stage_output)
    return stage_output / ck.PROJECTOR_FILE


class Checkpointer:
    """Checkpoints of one run under ``out_dir``; ``keep`` newest ``step-N`` are kept (see ``ck.prune``)."""

    def __init__(self, out_dir: Path, *, keep: int, fingerprint: str, is_main: bool, world_size: int,
                 deepspeed: bool) -> None:
        self.out_dir, self.keep, self.fingerprint = Path(out_dir), keep, fingerprint
        self.is_main, self.world_size, self.deepspeed = is_main, world_size, deepspeed
        self.root = self.out_dir / CHECKPOINTS
        self.final_dir = self.out_dir / FINAL

    def _barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def resume_point(self) -> Optional[Path]:
        """The checkpoint this run resumes from, or None; collective (see the module docstring)."""
        choice = [None]
        if self.is_main:
            latest = ck.find_latest(self.root, fingerprint=self.fingerprint, set_aside=True)
            choice = [str(latest) if latest else None]
        if self.world_size > 1:
            dist.broadcast_object_list(choice, src=0)
        self._barrier()  # every rank has chosen before rank 0 deletes anything
        if self.is_main:
            self.root.mkdir(parents=True, exist_ok=True)  # a declared output, even if empty
            ck.prune(self.root, keep=self.keep, fingerprint=self.fingerprint)
        self._barrier()
        return Path(choice[0]) if choice[0] else None

    def load(self, directory: Path, *, model: torch.nn.Module, engine: Any, device: torch.device) -> dict[str, Any]:
        """Restore ``directory`` (a verified ``step-N``) into ``model``/``engine``; returns its trainer state."""
        if self.deepspeed:
            path, _ = engine.load_checkpoint(str(directory / ck.DEEPSPEED_DIR), tag="state", load_module_strict=False)
            if path is None:
                raise RuntimeError(f"{directory}: DeepSpeed could not load its state")
        else:
            trained.load_trainables(model, directory)
            engine.optimizer.load_state_dict(torch.load(directory / ck.OPTIMIZER_FILE, map_location=device,
                                                        weights_only=True))
            engine.lr_scheduler.load_state_dict(torch.load(directory / ck.SCHEDULER_FILE, weights_only=True))
        return ck.read_state(directory)

    def save(self, *, step: int, final: bool, model: torch.nn.Module, engine: Any, processor: Any,
             full_parts: list[str], train_config: dict[str, Any], state: dict[str, Any],
             data_report: Optional[dict[str, Any]] = None) -> Path:
        """Write ``step-<step>/`` (with resume state) or ``final/``; collective; returns the folder."""
        target = self.final_dir if final else self.root / ck.step_name(step)
        tmp = ck.tmp_dir_for(target)
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self._barrier()
        if self.deepspeed and not final:
            engine.save_checkpoint(str(tmp / ck.DEEPSPEED_DIR), tag="state", save_latest=False,
                                   exclude_frozen_parameters=True)
        trained.save_trainables(tmp, model, full_parts=full_parts, is_main=self.is_main)
        if self.is_main:
            if not self.deepspeed and not final:
                torch.save(engine.optimizer.state_dict(), tmp / ck.OPTIMIZER_FILE)
                torch.save(engine.lr_scheduler.state_dict(), tmp / ck.SCHEDULER_FILE)
            base_of(model).config.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            ck.write_json(tmp / ck.TRAIN_CONFIG, train_config)
            ck.write_json(tmp / ck.TRAINER_STATE, state)
            if final and data_report is not None:
                ck.write_json(tmp / DATA_REPORT, data_report)
            ck.write_manifest(tmp)
            ck.commit_dir(tmp, target)
            if not final:
                ck.prune(self.root, keep=self.keep, fingerprint=self.fingerprint)
            logger.info("saved %s (step %d)", target, step)
        self._barrier()
        return target
