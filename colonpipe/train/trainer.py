"""The training recipe: ``setup -> train -> save_checkpoint -> cleanup`` (torchtune-style).

One loop serves both stages and every back-end: ``align`` (projector only, on CAP) and
``finetune`` (LoRA/full LM + projector, on CLS+REG+REC), with or without DeepSpeed, on one
or many processes (see :mod:`colonpipe.train.engine` and :mod:`colonpipe.train.launch`).

- Parameter groups: the projector trains at ``projector_lr``, everything else at ``lr``.
- Loss: next-token cross-entropy on answer + EOS tokens, averaged per token or per dialogue
  (``loss_reduction``, see :mod:`colonpipe.train.loss`).
- Schedule: linear warmup over ``ceil(warmup_ratio * total_steps)`` steps, then cosine to 0.
- Precision: ``auto`` is bf16 (+tf32 matmuls) on GPU, fp32 on CPU.
- One optimizer step = ``grad_accum`` micro batches per process; an epoch is
  ``floor(micro batches per rank / grad_accum)`` steps (a ragged tail is dropped).
- Checkpoints every ``save_steps`` steps under ``<out>/checkpoints/step-N`` (atomic, every
  file's sha256 in its manifest); ``setup`` resumes from the newest one whose fingerprint
  matches and whose files all verify (rank 0 hashes, then tells the other ranks; a tampered
  one is set aside as ``step-N.rejected``, see :mod:`colonpipe.model.checkpoint_files`).
- Dropout RNG is re-seeded from (seed, step, rank) every step, so a resumed run draws what the
  uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from colonpipe.hashing import sha256_path
from colonpipe.model.checkpoint_files import PROJECTOR_FILE
from colonpipe.model import trained
from colonpipe.model.presets import default_attn_implementation, load_base
from colonpipe.model.trained import base_of
from colonpipe.params import TrainParams, flatten
from colonpipe.train.checkpointer import FINAL, Checkpointer, init_projector
from colonpipe.train.collator import TrainingCollator
from colonpipe.train.dataset import load_dataset, token_count
from colonpipe.train.engine import build_engine
from colonpipe.train.launch import dist_info
from colonpipe.train.loss import causal_lm_loss
from colonpipe.train.parts import configure_parts
from colonpipe.train.report import write_reports
from colonpipe.train.sampler import ResumableShardSampler

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainPaths:
    """Inputs and output folder of one training stage."""

    base: Path  # base model folder (models/base)
    data: Path  # instruction JSON
    image_root: Path  # images: a folder or an image_roots.json
    out_dir: Path  # models/<stage>: final/, checkpoints/, train_metrics.json, loss curve
    init_from: Path | None = None  # trained dir whose projector starts this run (align/final)
    splits: dict[str, list[Path]] | None = None  # {split: files} trained on; None = {"train": [data]}

    @property
    def files_by_split(self) -> dict[str, list[Path]]:
        """The instruction files trained on, by ColonINST split (``train`` first)."""
        return self.splits or {"train": [Path(self.data)]}


@dataclass
class TrainState:
    """What resumes: the step counter, the loss history and throughput counters."""

    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # {step, loss, lr, lr_projector}
    samples: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    resumed_from: int | None = None


def fingerprint(p: TrainParams, paths: TrainPaths, *, world_size: int, total_steps: int) -> str:
    """Hash of everything a resumed run must share with its checkpoint: the hyperparameters
    (not the save cadence or worker count), world size, the schedule length and the CONTENT of
    the inputs (base model, training JSON, stage-1 projector, an image_roots.json), so a rebuilt
    base or changed data starts over instead of resuming a stale run. Image folders are too big
    to hash here; their path counts."""
    knobs = dataclasses.asdict(p)
    for volatile in ("save_steps", "keep_checkpoints", "num_workers", "cpu_threads", "hostfile", "max_steps", "epochs",
                     "train_splits"):
        knobs.pop(volatile)  # they matter only through total_steps / the data files below
    root = paths.image_root
    extra = [sha256_path(f) for split, files in paths.files_by_split.items() if split != "train" for f in files]
    if extra:  # a train-only run keeps the fingerprint it always had
        knobs["extra_data"] = extra
    knobs.update(world_size=world_size, total_steps=total_steps, base=sha256_path(paths.base),
                 data=sha256_path(paths.data),
                 image_root=sha256_path(root) if Path(root).is_file() else str(root),
                 init_from=sha256_path(Path(paths.init_from) / PROJECTOR_FILE) if paths.init_from else None)
    return hashlib.sha256(json.dumps(knobs, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TrainRecipe:
    """One training run. Call ``setup()``, ``train()``, ``save_checkpoint(final=True)``, ``cleanup()``
    (``run_training`` does exactly that). ``run_logger`` (a tracking ``RunLogger``) is used on rank 0."""

    def __init__(self, params: TrainParams, paths: TrainPaths, *, stage: str, run_logger: Any = None):
        self.p, self.paths, self.stage = params, paths, stage
        self.info = dist_info()
        self.run_logger = run_logger if self.info.is_main else None
        self.state = TrainState()
        self._owns_group = False

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        """Process group, seeds, model, data, optimizer/engine, then resume if a checkpoint exists."""
        p = self.p
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", self.info.local_rank) if cuda else torch.device("cpu")
        self.bf16 = p.precision == "bf16" or (p.precision == "auto" and cuda)
        if not cuda and p.cpu_threads > 0:
            torch.set_num_threads(p.cpu_threads)
        if cuda:
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self._init_distributed(backend="nccl" if cuda else "gloo")
        torch.manual_seed(p.seed)
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        self.fingerprint = self._shared_fingerprint()
        self.checkpointer = Checkpointer(self.paths.out_dir, keep=self.p.keep_checkpoints,
                                         fingerprint=self.fingerprint, is_main=self.info.is_main,
                                         world_size=self.info.world_size, deepspeed=self.p.deepspeed.enabled)
        self._resume()
        self._log_start()

    def _shared_fingerprint(self) -> str:
        """Rank 0 hashes the inputs (a real base is GBs) and tells the other ranks."""
        fp = [fingerprint(self.p, self.paths, world_size=self.info.world_size, total_steps=self.total_steps)
              if self.info.is_main else None]
        if self.info.world_size > 1:
            dist.broadcast_object_list(fp, src=0)
        return fp[0]

    def _init_distributed(self, *, backend: str) -> None:
        if self.p.deepspeed.enabled:
            import deepspeed

            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
            self._owns_group = True
        elif self.info.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend=backend)
            self._owns_group = True

    def _setup_model(self) -> None:
        p = self.p
        attn = p.attn_implementation
        if attn == "auto":
            attn = default_attn_implementation(torch.bfloat16 if self.bf16 else None)
        model, self.processor = load_base(self.paths.base, dtype=torch.float32, attn_implementation=attn)
        if self.paths.init_from is not None:
            trained.load_projector(model, init_projector(self.paths.init_from))
            logger.info("projector initialised from %s", self.paths.init_from)
        model.config.use_cache = False
        model.language_model.config.use_cache = False
        if p.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model, self.counts = configure_parts(model, p.parts, p.lora)
        self.full_parts = [part for part in ("vision", "llm") if getattr(p.parts, part) == "full"]
        self.hidden_size = model.config.text_config.hidden_size

    def _setup_data(self) -> None:
        p, info = self.p, self.info
        files = [f for split_files in self.paths.files_by_split.values() for f in split_files]
        self.dataset = load_dataset(files, self.paths.image_root, self.processor,
                                    max_length=p.max_length, max_records=p.max_records, seed=p.seed)
        self.sampler = ResumableShardSampler(len(self.dataset), rank=info.rank, world_size=info.world_size, seed=p.seed)
        self.loader = DataLoader(self.dataset, batch_size=p.batch_size, sampler=self.sampler,
                                 collate_fn=TrainingCollator(self.processor), num_workers=p.num_workers,
                                 pin_memory=self.device.type == "cuda")
        micro = math.ceil(self.sampler.per_rank / p.batch_size)
        if micro < p.grad_accum:
            raise ValueError(f"{self.paths.data}: {len(self.dataset)} records give {micro} micro batches per "
                             f"process, fewer than grad_accum={p.grad_accum}")
        self.steps_per_epoch = micro // p.grad_accum
        full = self.steps_per_epoch * p.epochs
        self.total_steps = min(full, p.max_steps) if p.max_steps else full

    def _setup_optimizer(self) -> None:
        p = self.p
        projector_ids = {id(q) for q in base_of(self.model).multi_modal_projector.parameters()}
        trainable = [(n, q) for n, q in self.model.named_parameters() if q.requires_grad]
        groups = [
            {"name": "lm", "params": [q for _, q in trainable if id(q) not in projector_ids], "lr": p.lr},
            {"name": "projector", "params": [q for _, q in trainable if id(q) in projector_ids], "lr": p.projector_lr},
        ]
        groups = [g for g in groups if g["params"]]
        for g in groups:
            g["weight_decay"] = p.weight_decay
        self.group_names = [g.pop("name") for g in groups]
        if p.deepspeed.enabled and p.deepspeed.offload_optimizer:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(groups, lr=p.lr, adamw_mode=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=p.lr, fused=self.device.type == "cuda")
        warmup = math.ceil(p.warmup_ratio * self.total_steps)
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, self.total_steps)
        self.engine = build_engine(self.model, optimizer, scheduler, p, device=self.device, bf16=self.bf16,
                                   world_size=self.info.world_size, hidden_size=self.hidden_size)

    def _resume(self) -> None:
        latest = self.checkpointer.resume_point()
        if latest is None:
            logger.info("no checkpoint to resume under %s: starting at step 0", self.checkpointer.root)
            return
        saved = self.checkpointer.load(latest, model=self.model, engine=self.engine, device=self.device)
        fields = {f.name for f in dataclasses.fields(TrainState)}
        self.state = TrainState(**{k: v for k, v in saved.items() if k in fields})
        self.state.resumed_from = self.state.global_step
        logger.info("resumed from %s at step %d", latest, self.state.global_step)

    # ----------------------------------------------------------------- train
    def _reduce(self, values: list[float]) -> list[float]:
        """Sum ``values`` over ranks."""
        if self.info.world_size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def _micro_batches(self):
        """Yield the micro batches of the remaining steps, epoch by epoch, from the resume point."""
        p, step = self.p, self.state.global_step
        while step < self.total_steps:
            epoch, done = divmod(step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, skip=done * p.grad_accum * p.batch_size)
            batches = iter(self.loader)
            for _ in range(min(self.steps_per_epoch - done, self.total_steps - step)):
                yield [next(batches) for _ in range(p.grad_accum)]
                step += 1

    def train(self) -> None:
        """Run optimizer steps until ``total_steps``, logging and checkpointing on the way."""
        p, st, engine = self.p, self.state, self.engine
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=st.global_step, desc=f"{self.stage} steps",
                   disable=not self.info.is_main)
        for micro in self._micro_batches():
            torch.manual_seed(p.seed * 1_000_003 + st.global_step * self.info.world_size + self.info.rank)
            t0 = time.perf_counter()
            loss_sum, samples, tokens = 0.0, 0, 0
            for batch in micro:
                samples, tokens = samples + batch["input_ids"].shape[0], tokens + token_count(batch)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                labels = batch.pop("labels")
                loss = causal_lm_loss(engine(**batch).logits, labels, reduction=p.loss_reduction)
                engine.backward(loss)
                engine.step()
                loss_sum += float(loss.detach())
            loss_sum, samples, tokens = self._reduce([loss_sum / p.grad_accum, samples, tokens])
            dt = time.perf_counter() - t0
            st.global_step += 1
            st.samples, st.tokens, st.train_seconds = st.samples + int(samples), st.tokens + int(tokens), st.train_seconds + dt
            self._record_step(loss_sum / self.info.world_size, samples / dt, tokens / dt)
            bar.update(1)
            bar.set_postfix(loss=f"{st.history[-1]['loss']:.4f}")
            if st.global_step % p.save_steps == 0 and st.global_step < self.total_steps:
                self.save_checkpoint()
        bar.close()

    def _record_step(self, loss: float, samples_per_s: float, tokens_per_s: float) -> None:
        lrs = dict(zip(self.group_names, self.engine.lr_scheduler.get_last_lr()))
        row = {"step": self.state.global_step, "loss": loss, "lr": lrs.get("lm", 0.0),
               "lr_projector": lrs.get("projector", 0.0)}
        self.state.history.append(row)
        if self.run_logger is not None:
            metrics = {k: v for k, v in row.items() if k != "step"}
            metrics.update(samples_per_s=samples_per_s, tokens_per_s=tokens_per_s)
            self.run_logger.log_metrics(metrics, step=self.state.global_step)

    # ----------------------------------------------------------------- checkpoints
    def train_config(self) -> dict[str, Any]:
        """The resolved hyperparameters recorded in every checkpoint."""
        p = self.p
        return {
            "stage": self.stage, "params": dataclasses.asdict(p), "fingerprint": self.fingerprint,
            "base_dir": str(self.paths.base), "data": str(self.paths.data),
            "train_splits": {split: [str(f) for f in files] for split, files in self.paths.files_by_split.items()},
            "init_from": str(self.paths.init_from) if self.paths.init_from else None,
            "world_size": self.info.world_size, "global_batch": p.batch_size * p.grad_accum * self.info.world_size,
            "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
            "precision": "bf16" if self.bf16 else "fp32", "deepspeed": p.deepspeed.enabled,
            "param_counts": self.counts.as_metrics(), "records": len(self.dataset),
        }

    def save_checkpoint(self, *, final: bool = False) -> Path:
        """Write ``step-N/`` (with resume state) or ``final/`` through the checkpointer; collective."""
        return self.checkpointer.save(
            step=self.state.global_step, final=final, model=self.model, engine=self.engine,
            processor=self.processor, full_parts=self.full_parts, train_config=self.train_config(),
            state=dataclasses.asdict(self.state), data_report={"skipped": self.dataset.skipped} if final else None)

    # ----------------------------------------------------------------- logging / cleanup
    def _log_start(self) -> None:
        logger.info("%s: %d records, %d steps/epoch, %d total steps, global batch %d, %s, world %d",
                    self.stage, len(self.dataset), self.steps_per_epoch, self.total_steps,
                    self.p.batch_size * self.p.grad_accum * self.info.world_size,
                    "bf16" if self.bf16 else "fp32", self.info.world_size)
        if self.run_logger is not None:
            cfg = self.train_config()
            derived = {k: cfg[k] for k in ("world_size", "global_batch", "steps_per_epoch", "total_steps",
                                           "precision", "records", "base_dir", "data", "init_from")}
            self.run_logger.log_params(flatten({self.stage: dataclasses.asdict(self.p)})
                                       | flatten({f"{self.stage}.derived": derived}))
            self.run_logger.log_metrics({k: float(v) for k, v in self.counts.as_metrics().items()}, step=0)

    def cleanup(self) -> None:
        """Tear down the process group this recipe created."""
        if self._owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def run_training(params: TrainParams, paths: TrainPaths, *, stage: str, run_logger: Any = None) -> dict[str, Any]:
    """setup -> train -> save final -> reports -> cleanup. Returns the metrics (rank 0; {} elsewhere).

    Writes ``<out>/final/``, ``<out>/checkpoints/step-N/``, and on rank 0
    ``<out>/train_metrics.json``, ``<out>/loss.csv`` and ``<out>/loss_curve.png``.
    """
    recipe = TrainRecipe(params, paths, stage=stage, run_logger=run_logger)
    try:
        recipe.setup()  # inside the try: a failed setup still tears down the process group
        recipe.train()
        final = recipe.save_checkpoint(final=True)
        metrics: dict[str, Any] = {}
        if recipe.info.is_main:
            metrics = write_reports(paths.out_dir, recipe.state, recipe.counts,
                                    skipped=len(recipe.dataset.skipped), stage=stage)
            if recipe.run_logger is not None:
                recipe.run_logger.log_metrics({k: float(v) for k, v in metrics.items()})
                for name in ("train_metrics.json", "loss_curve.png", "loss.csv"):
                    recipe.run_logger.log_artifact(paths.out_dir / name)
                recipe.run_logger.log_artifact(final, FINAL)
        return metrics
    finally:
        recipe.cleanup()
