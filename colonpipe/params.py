"""Typed, validated view of ``params.yaml``.

Contract:
- Each top-level section of ``params.yaml`` maps to one frozen dataclass in ``SECTIONS``.
- ``load_params(path)`` validates the *whole* file: unknown sections or keys, missing
  required keys and wrong types are collected and raised together as one ``ParamsError``
  naming the file and every offending dotted key.
- ``load_section(name, path)`` returns one section (after validating the whole file), so
  a stage reads only its own knobs while a typo anywhere is still caught early.
- Every section validates itself when it is built (``__post_init__``, so ``dataclasses.replace``
  and direct construction are checked too): ``ParamsError`` lists the problems.
- Dataclass fields carry the defaults, and they are the recipe's (spec section 4) where the
  recipe has a value; ``params.yaml`` holds the demo's choices, each commented with the recipe's.
  YAML comments carry the trade-offs.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from colonpipe.coloninst import SPLIT_RATIOS, SPLITS, TASKS, check_ratios
from colonpipe.projector_types import num_image_tokens
from colonpipe.taxonomy import check_targets

class ParamsError(ValueError):
    """Raised with every problem found in a params file, one per line (``problems``)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [message])


class _Checked:
    """A section that checks itself when built: ``validate()`` returns its problems."""

    def validate(self) -> list[str]:
        return []

    def __post_init__(self) -> None:
        problems = self.validate()
        if problems:
            raise ParamsError(f"{type(self).__name__}: " + "; ".join(problems), problems)


# --------------------------------------------------------------------------- data stages
@dataclass(frozen=True)
class PathsParams(_Checked):
    """Where the pipeline's files live, relative to the project root: the one definition that
    ``dvc.yaml`` (``${paths.*}``), the stage scripts (through their arguments) and the flows share."""

    raw: str = "data/raw"  # raw sources (the demo writes here)
    interim: str = "data/interim"  # annotations.parquet, ingest_report.json, image_roots.json
    coloninst: str = "data/coloninst"  # Json-file/{train,val,test}/, stats.json
    models: str = "models"  # base/, align/, finetune/ (each with final/, checkpoints/, pred/)

    @property
    def json_dir(self) -> str:
        """The release layout's ``Json-file`` folder."""
        return f"{self.coloninst}/Json-file"

    @property
    def image_roots(self) -> str:
        """Ingest's ``{dataset: image folder}`` map that inference and training resolve ids with."""
        return f"{self.interim}/image_roots.json"

    def validate(self) -> list[str]:
        return [f"{k}: must be a non-empty path relative to the project root, got {v!r}"
                for k, v in dataclasses.asdict(self).items() if not v or Path(v).is_absolute() or ".." in Path(v).parts]


@dataclass(frozen=True)
class DemoParams(_Checked):
    """Generated raw demo dataset (stage ``demo``)."""

    seed: int = 0
    images_per_category: int = 40  # per source; demo size vs pipeline time
    bad_inputs: bool = True  # plant corrupt/odd files so the report shows every check


FORMATS = ("class_folders", "mask", "voc", "sun_txt", "yolo_txt", "json_boxes", "coco", "label_table",
           "coloninst_release")
SPLIT_RULES = ("official", "none", "list", "train", "val", "test")


@dataclass(frozen=True)
class TableParams(_Checked):
    """A label table (CSV/TSV): one row per image, or per object when it has box columns.

    Columns are header names, or 0-based indices written as strings (``"0"``) when
    ``header`` is false. ``sep`` null sniffs the first line: tab, then ``;``, then ``,``,
    else runs of whitespace.
    """

    file: str  # glob relative to the source root; every match is read (one table per split folder)
    image: str  # image path (relative to the root or the table's folder), file name or stem
    label: str  # raw label
    sep: Optional[str] = None
    header: bool = True
    group: Optional[str] = None  # video / case id column: frames sharing it never straddle splits
    box: list[str] = field(default_factory=list)  # 4 columns x1,y1,x2,y2 (inclusive pixels) or 8 corners x1..y4

    def validate(self) -> list[str]:
        problems = []
        if len(self.box) not in (0, 4, 8):
            problems.append(f"table.box needs 4 (x1,y1,x2,y2) or 8 (corner) columns, got {len(self.box)}")
        if self.sep is not None and len(self.sep) != 1:
            problems.append(f"table.sep must be one character or null (sniffed), got {self.sep!r}")
        if not self.header:
            bad = [c for c in [self.image, self.label, self.group, *self.box] if c is not None and not c.isdigit()]
            problems += [f"table.header is false: column {c!r} must be a 0-based index such as \"0\"" for c in bad]
        return problems


@dataclass(frozen=True)
class SourceParams(_Checked):
    """One raw source dataset in its native layout.

    ``preset`` names an entry of the dataset catalogue (``colonpipe/data/catalogue.yaml``,
    documented in docs/data.md) that supplies every field left unset here; entries of
    ``categories`` / ``split_folders`` / ``split_lists`` are added to the preset's (yours
    win), any other field given here (a nested ``table`` too) replaces the preset's. Fields
    whose default is null mean "the preset's value, else the format's default".
    """

    name: str  # dataset name; first component of every record id
    root: str  # folder holding the source; every file must stay under it
    format: Optional[Literal[FORMATS]] = None  # null: the preset's (required without one)
    preset: Optional[str] = None  # catalogue entry, e.g. Kvasir-Capsule (aliases and any case accepted)
    # official: Train/Val/Test folders (+ split_folders aliases); none: seeded 60/10/30 per category;
    # list: split_lists files; train/val/test: every image goes there (test-only benchmarks).
    # none is the default, so with a preset it means "the preset's rule".
    split: Literal[SPLIT_RULES] = "none"
    categories: dict[str, str] = field(default_factory=dict)  # raw label -> ColonINST child
    yolo_classes: list[str] = field(default_factory=list)  # class index -> raw label (yolo_txt)
    # --- layout and pairing (null: the preset's, else the format's defaults)
    ignore: Optional[list[str]] = None  # globs on paths under the root left out entirely (overlays, negatives)
    image_dirs: Optional[list[str]] = None  # folder-name globs holding images, e.g. ["images_*", "Frame"]
    annotation_dirs: Optional[list[str]] = None  # folder-name globs holding masks / box files, e.g. ["masks_*"]
    annotation_suffix: Optional[str] = None  # stem suffix of annotation files: x_mask.png belongs to x.jpg
    annotation_files: Optional[list[str]] = None  # coco: globs of the JSON files to read (default: every .json)
    box_format: Optional[Literal["xywh", "xyxy"]] = None  # coco bbox: [x, y, w, h] (COCO) or [x1, y1, x2, y2]
    category_key: Optional[Literal["name", "id"]] = None  # coco: raw label is the category name (default) or id
    label_level: Optional[int] = None  # class_folders: folder index giving the label (-1 = parent folder)
    table: Optional[TableParams] = None  # label_table: the table; other formats: image labels overriding theirs
    # --- splits and labels
    split_folders: dict[str, str] = field(default_factory=dict)  # extra folder names -> split, e.g. train2019: train
    split_lists: dict[str, str] = field(default_factory=dict)  # split -> list file or image folder (split: list)
    unlisted_split: Optional[Literal["train", "val", "test"]] = None  # split: list, images in no list
    group_by: Optional[str] = None  # regex on the path; group 1 (or the match) = video/case; "" = no grouping
    ignore_labels: Optional[list[str]] = None  # raw labels that are not ColonINST positives: left out, counted
    unannotated_label: Optional[str] = None  # raw label for images no annotation object refers to (class only)
    fold_labels: Optional[bool] = None  # match raw labels case-, _- and space-insensitively

    def validate(self) -> list[str]:
        problems = []
        if not self.name or "/" in self.name or self.name in (".", ".."):
            problems.append(f"name {self.name!r} must be non-empty, without '/' (it starts every record id)")
        if self.preset is None:
            problems += self.resolved_problems()
        bad = sorted(set(self.split_folders.values()) - {"train", "val", "test"})
        problems += [f"source {self.name!r}: split_folders maps to {b!r}, not train/val/test" for b in bad]
        bad = sorted(set(self.split_lists) - {"train", "val", "test"})
        problems += [f"source {self.name!r}: split_lists key {b!r} is not train/val/test" for b in bad]
        if self.group_by:
            try:
                re.compile(self.group_by)
            except re.error as exc:
                problems.append(f"source {self.name!r}: group_by is not a regular expression ({exc})")
        return problems

    def resolved_problems(self) -> list[str]:
        """Checks that need the final field values (after a preset filled them in)."""
        problems = []
        if self.format is None:
            return [f"source {self.name!r}: format is missing (give one, or a preset)"]
        if not self.categories and self.format != "coloninst_release":
            problems.append(f"source {self.name!r}: categories is empty (map each raw label to a category)")
        if self.format == "yolo_txt" and not self.yolo_classes:
            problems.append(f"source {self.name!r}: format yolo_txt needs yolo_classes (index -> raw label)")
        if self.format != "yolo_txt" and self.yolo_classes:
            problems.append(f"source {self.name!r}: yolo_classes is only used by format yolo_txt")
        if self.format == "label_table" and self.table is None:
            problems.append(f"source {self.name!r}: format label_table needs a table block")
        if self.split == "list" and not self.split_lists:
            problems.append(f"source {self.name!r}: split: list needs split_lists (split -> file or folder)")
        if self.split != "list" and (self.split_lists or self.unlisted_split):
            problems.append(f"source {self.name!r}: split_lists / unlisted_split need split: list")
        return problems


@dataclass(frozen=True)
class IngestParams(_Checked):
    """Raw sources -> ``data/interim/annotations.parquet`` (stage ``ingest``)."""

    sources: list[SourceParams] = field(default_factory=list)
    captions: Optional[str] = None  # JSONL {"image": <rel path>, "caption": ...}; None: no CAP
    box_policy: Literal["clip", "skip"] = "clip"  # box partly outside the image
    extra_categories: list[str] = field(default_factory=list)  # accepted beyond the taxonomy
    image_check: Literal["markers", "reduced", "full"] = "markers"  # integrity check depth vs speed
    workers: int = 2  # processes checking images; output does not depend on it

    def validate(self) -> list[str]:
        problems = []
        names = [s.name for s in self.sources]
        problems += [f"source name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
        if not self.sources:
            problems.append("sources is empty: name at least one raw source")
        for src in self.sources:
            targets = sorted(set(src.categories.values()))
            problems += [f"sources[{src.name}]: {p}" for p in check_targets(targets, self.extra_categories)]
        if any(s.format == "coloninst_release" for s in self.sources):
            if len(self.sources) > 1:
                problems.append("a coloninst_release source must be the only source (its files pass on unchanged)")
            if self.captions is not None:
                problems.append("captions must be null with a coloninst_release source (its CAP files hold them)")
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        return problems


@dataclass(frozen=True)
class InstructParams(_Checked):
    """Manifest -> ColonINST instruction JSON (stage ``instruct``)."""

    seed: int = 0  # template draw and split order; same seed -> byte-identical files
    split_ratios: list[float] = field(default_factory=lambda: list(SPLIT_RATIOS))  # train/val/test

    def validate(self) -> list[str]:
        return check_ratios(self.split_ratios)


@dataclass(frozen=True)
class InferParams(_Checked):
    """Batched, sharded, resumable generation over val/test (stage ``infer``)."""

    batch_size: int = 32  # sequences per generate call; larger = faster until memory runs out
    num_shards: int = 0  # worker processes; 0 = auto (one per visible GPU, else min(2, cores) on CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 GPU, fp32 CPU
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"cls": 40, "reg": 40, "rec": 40, "cap": 512}
    )
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    cap_model: Literal["align", "finetune"] = "align"  # reference: CAP is answered by stage 1
    limit: Optional[int] = None  # at most this many records per split (smoke tests); None = all
    cpu_threads: int = 0  # torch threads shared by all CPU workers; 0 = all cores

    def validate(self) -> list[str]:
        problems = []
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_shards < 0 or self.cpu_threads < 0:
            problems.append("num_shards and cpu_threads must be >= 0 (0 = auto)")
        if set(self.max_new_tokens) != set(TASKS):
            problems.append(f"max_new_tokens needs exactly the keys {list(TASKS)}")
        if any(v < 1 for v in self.max_new_tokens.values()):
            problems.append("max_new_tokens values must be >= 1")
        if not self.splits or set(self.splits) - set(SPLITS):
            problems.append(f"splits must be a non-empty subset of train/val/test: {self.splits}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1 or null, got {self.limit}")
        return problems


@dataclass(frozen=True)
class EvaluateParams(_Checked):
    """Scoring predictions (stage ``evaluate``); the metric rules are the reference's (``scoring``)."""

    splits: list[str] = field(default_factory=lambda: ["val", "test"])  # seen/held-out: see finetune.train_splits
    tasks: list[str] = field(default_factory=lambda: list(TASKS))  # tasks without predictions are skipped
    iou_bins: int = 20  # REC IoU histogram bins; finer shows more shape, needs more records
    # CLS/REG exact match: "reference" (the reference evaluator's, no strip) or "lenient"
    # (outer whitespace stripped too); named in every metrics block as "scoring"
    scoring: Literal["reference", "lenient"] = "reference"

    def validate(self) -> list[str]:
        problems = []
        if not self.splits or set(self.splits) - set(SPLITS):
            problems.append(f"splits must be a non-empty subset of train/val/test: {self.splits}")
        if not self.tasks or set(self.tasks) - set(TASKS):
            problems.append(f"tasks must be a non-empty subset of {list(TASKS)}: {self.tasks}")
        if not 2 <= self.iou_bins <= 200:
            problems.append(f"iou_bins must be in 2..200, got {self.iou_bins}")
        return problems


# --------------------------------------------------------------------------- model
def _projector_problems(name: str, grid: int, key: str) -> list[str]:
    try:
        num_image_tokens(name, grid)
    except ValueError as exc:
        return [f"{key}: {exc}"]
    return []


@dataclass(frozen=True)
class TinyModelParams(_Checked):
    """Dimensions of the ``tiny`` preset: random weights, trains on 2 CPU cores in minutes."""

    image_size: int = 96
    patch_size: int = 8  # grid = image_size // patch_size
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate: int = 256
    text_hidden: int = 128
    text_layers: int = 3
    text_heads: int = 4
    text_intermediate: int = 512
    vocab_size: int = 1024  # BPE vocabulary trained on the instruction corpus (embedding rows)
    max_position: int = 512
    projector_type: str = "ppc_6_3_1"
    text_init_std: float = 0.088  # LM weight init std (HF's 0.02 suits 768+ wide models)
    position_init: str = "sincos"  # vision position embeddings: sincos (2-D, amplitude 0.3) | random

    def validate(self) -> list[str]:
        problems = [
            f"tiny.{name} must be >= 1, got {getattr(self, name)}"
            for name in ("image_size", "patch_size", "vision_hidden", "vision_layers", "vision_heads",
                         "vision_intermediate", "text_hidden", "text_layers", "text_heads",
                         "text_intermediate", "max_position")
            if getattr(self, name) < 1
        ]
        if not self.text_init_std > 0:
            problems.append(f"tiny.text_init_std must be > 0, got {self.text_init_std}")
        if self.position_init not in ("sincos", "random"):
            problems.append(f"tiny.position_init must be sincos or random, got {self.position_init!r}")
        elif self.position_init == "sincos" and self.vision_hidden % 4:
            problems.append(f"tiny.position_init sincos needs vision_hidden divisible by 4, got {self.vision_hidden}")
        if problems:
            return problems
        if self.vision_hidden % self.vision_heads or self.text_hidden % self.text_heads:
            problems.append("tiny: vision_hidden / text_hidden must be divisible by their heads")
        if self.vocab_size < 300:
            problems.append(f"tiny.vocab_size must be >= 300 (256 bytes + specials + merges), got {self.vocab_size}")
        grid = self.image_size // self.patch_size
        return problems + _projector_problems(self.projector_type, grid, "tiny.projector_type")


@dataclass(frozen=True)
class ModelParams(_Checked):
    """Base model (stage ``base``): the ``tiny`` preset, the real ``phi15-siglip`` pair, or the
    published ``colongpt-v1`` checkpoint converted once (``llm`` is then the base of a LoRA
    checkpoint, ``vision`` the tower when the checkpoint holds none)."""

    preset: Literal["tiny", "phi15-siglip", "colongpt-v1"] = "tiny"
    seed: int = 0  # tiny: weight init
    projector_type: Optional[str] = None  # None: tiny.projector_type / ppc_14_7_1 for phi15-siglip
    vision_feature_layer: int = -2  # -2: penultimate SigLIP layer
    llm: str = "microsoft/phi-1_5"  # phi15-siglip: hub id or local folder
    vision: str = "google/siglip-so400m-patch14-384"  # phi15-siglip: hub id or local folder
    checkpoint: str = "ai4colonoscopy/ColonGPT-v1"  # colongpt-v1: the published model (hub id or local folder)
    save_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    tiny: TinyModelParams = field(default_factory=TinyModelParams)

    def validate(self) -> list[str]:
        if self.projector_type is None:
            return []
        if self.preset == "colongpt-v1":
            return ["projector_type: colongpt-v1 takes it from the checkpoint's mm_projector_type; set it to null"]
        # phi15-siglip: the grid comes from the vision config; ColonGPTConfig checks the levels.
        grid = self.tiny.image_size // self.tiny.patch_size if self.preset == "tiny" else 10**6
        return _projector_problems(self.projector_type, grid, "projector_type")


# --------------------------------------------------------------------------- training
LLM_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]  # Phi: every linear but lm_head


@dataclass(frozen=True)
class DeepSpeedParams(_Checked):
    """DeepSpeed switch and ZeRO knobs; ``enabled: false`` runs the same loop without it."""

    enabled: bool = False
    zero_stage: Literal[0, 1, 2, 3] = 3  # recipe 3: shards params too (least memory, most communication)
    offload_optimizer: bool = False  # optimizer state in CPU RAM (uses DeepSpeed's cpu_adam)
    offload_param: bool = False  # ZeRO-3 only: parameters in CPU RAM


@dataclass(frozen=True)
class PartsParams(_Checked):
    """How each model part trains: ``frozen``, ``lora`` (adapters only) or ``full``."""

    vision: Literal["frozen", "lora", "full"] = "frozen"
    projector: Literal["frozen", "full"] = "full"
    llm: Literal["frozen", "lora", "full"] = "lora"


@dataclass(frozen=True)
class LoraParams(_Checked):
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLM_LINEAR_MODULES))


@dataclass(frozen=True)
class TrainParams(_Checked):
    """One training stage (sections ``align`` and ``finetune``)."""

    epochs: int = 3
    batch_size: int = 16  # per device (micro batch)
    grad_accum: int = 2  # global batch = batch_size * grad_accum * processes
    lr: float = 2e-4  # LoRA / LM learning rate
    projector_lr: float = 2e-3  # recipe stage 2; stage 1 (align) trains the projector at 2e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 2048
    loss_reduction: Literal["token", "sample"] = "token"  # mean over answer tokens, or per dialogue first
    save_steps: int = 3000
    keep_checkpoints: int = 2  # newest step-N/ dirs kept for resume
    seed: int = 0
    num_processes: int = 1
    hostfile: Optional[str] = None
    deepspeed: DeepSpeedParams = field(default_factory=DeepSpeedParams)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    gradient_checkpointing: bool = True
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    parts: PartsParams = field(default_factory=PartsParams)
    lora: LoraParams = field(default_factory=LoraParams)
    max_steps: Optional[int] = None  # stop after this many optimizer steps (tests, smoke runs)
    max_records: Optional[int] = None  # seeded subsample of the training records
    num_workers: int = 0  # DataLoader worker processes
    cpu_threads: int = 0  # CPU runs: torch threads per process; 0 = torch's default (all cores)
    # ColonINST splits trained on: ["train"] keeps val held out; ["train", "val"] is what upstream
    # did (val is then "seen"). Never "test". Reports read it back from final/train_config.json.
    train_splits: list[str] = field(default_factory=lambda: ["train"])

    def validate(self) -> list[str]:
        problems = []
        if "train" not in self.train_splits or set(self.train_splits) - {"train", "val"} or \
                len(set(self.train_splits)) != len(self.train_splits):
            problems.append(f"train_splits must be [train] or [train, val] (test stays held out), "
                            f"got {self.train_splits}")
        for name in ("epochs", "batch_size", "grad_accum", "save_steps", "num_processes",
                     "max_length", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cpu_threads < 0 or self.num_workers < 0:
            problems.append("cpu_threads and num_workers must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr <= 0 or self.projector_lr <= 0:
            problems.append("lr and projector_lr must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.max_records is not None and self.max_records < 1:
            problems.append(f"max_records must be >= 1 or null, got {self.max_records}")
        if self.deepspeed.offload_param and self.deepspeed.zero_stage != 3:
            problems.append("deepspeed.offload_param needs zero_stage 3")
        if "lora" in (self.parts.vision, self.parts.llm) and (self.lora.r < 1 or not self.lora.target_modules):
            problems.append("lora parts need lora.r >= 1 and non-empty lora.target_modules")
        if all(m == "frozen" for m in (self.parts.vision, self.parts.projector, self.parts.llm)):
            problems.append("parts: every part is frozen, nothing would train")
        return problems


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class RegisterParams(_Checked):
    """Model-registry promotion rule (stage ``register``).

    Metric names are dotted paths into the metrics JSON files, prefixed by the file stem:
    ``metrics/test.json`` ``{"cls": {"accuracy": ..}}`` -> ``test.cls.accuracy``.
    Floors, tolerances and the verify delay must be finite numbers (YAML ``.nan``/``.inf``
    are rejected): a NaN compares false both ways and would silently disable its check.
    """

    model_name: str = "colongpt"  # registered model name in MLflow
    primary_metric: str = "test.cls.accuracy"  # the candidate must beat the champion strictly
    higher_is_better: dict[str, bool] = field(default_factory=dict)  # per metric; unlisted: true
    guards: dict[str, float] = field(default_factory=dict)  # metric -> tolerated regression (>= 0)
    floors: dict[str, float] = field(default_factory=dict)  # first model: metric -> minimum
    # (a maximum for a lower-is-better metric)
    remote_verify_s: float = 2.0  # shared tracking server: wait this long after moving `champion`,
    # re-read it and re-decide if another writer moved it (longer than any writer's read-to-write gap)

    def validate(self) -> list[str]:
        problems = []
        if not self.model_name.strip():
            problems.append("model_name must not be empty")
        if not self.primary_metric.strip():
            problems.append("primary_metric must not be empty")
        for k, v in self.guards.items():
            if not math.isfinite(v) or v < 0:
                problems.append(f"guards.{k}: tolerance must be a finite number >= 0, got {v}")
        problems += [f"floors.{k}: floor must be a finite number, got {v}"
                     for k, v in self.floors.items() if not math.isfinite(v)]
        if not math.isfinite(self.remote_verify_s) or not 0 <= self.remote_verify_s <= 600:
            problems.append(f"remote_verify_s must be a finite number of seconds in 0..600, got {self.remote_verify_s}")
        return problems


# Sections are registered here; later issues add theirs (model, align, finetune, ...).
SECTIONS: dict[str, type] = {
    "paths": PathsParams,
    "demo": DemoParams,
    "ingest": IngestParams,
    "instruct": InstructParams,
    "model": ModelParams,
    "align": TrainParams,
    "finetune": TrainParams,
    "infer": InferParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
}


# --------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    """Check ``value`` against annotation ``tp``; return the converted value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, errors)
    if origin is Literal:
        if value not in args:
            errors.append(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, errors)
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list, got {type(value).__name__}")
            return value
        return [_convert(v, args[0], f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {type(value).__name__}")
            return value
        return {
            _convert(k, args[0], f"{key}.<key>", errors): _convert(v, args[1], f"{key}.{k}", errors)
            for k, v in value.items()
        }
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            errors.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp} for {key}")


def _build(cls: type, data: Any, prefix: str, errors: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{prefix}: expected a mapping, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - set(fields)):
        errors.append(f"{prefix}.{key}: unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{prefix}.{name}", errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{prefix}.{name}: required key is missing")
    if any(e.startswith(prefix + ".") or e.startswith(prefix + ":") for e in errors):
        return None
    try:
        return cls(**kwargs)
    except ParamsError as exc:  # the section's own checks (__post_init__)
        errors.extend(f"{prefix}: {msg}" for msg in exc.problems)
        return None


def parse_params(raw: Any, *, source: str = "<params>") -> dict[str, Any]:
    """Validate a params mapping; return ``{section: dataclass}`` or raise ``ParamsError``."""
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections")
    for key in sorted(set(raw) - set(SECTIONS)):
        errors.append(f"{key}: unknown section (known: {', '.join(SECTIONS)})")
    out = {name: _build(cls, raw.get(name), name, errors) for name, cls in SECTIONS.items()}
    if errors:
        raise ParamsError(f"{source}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    return out


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate a params YAML file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, source=str(path))


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """Validate the whole file, return section ``name``."""
    if name not in SECTIONS:
        raise ParamsError(f"{path}: no section named {name!r}")
    return load_params(path)[name]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a section dataclass to dotted keys (``finetune.lora.r``) for tracking."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


# --------------------------------------------------------------------------- override points
def check_point(raw: Any, *, point: str) -> Optional[dict[str, Any]]:
    """Build one override point's params through the section dataclasses, before it runs.

    ``raw`` is a whole ``params.yaml`` mapping with the point's overrides applied (a sweep
    point, a pipeline run's ``params``); ``point`` names it in the error, e.g.
    ``sweep point 2 (finetune.lr="x")``. The schema is colonpipe's: it applies when every
    top-level key of ``raw`` is one of ``SECTIONS``. Another project's params file (the
    flows run any DVC repo) is not checked here and gives None.
    Returns ``{section: dataclass}``; raises ``ParamsError`` (``<point>: N problem(s):``
    then one ``<dotted key>: <problem>`` per line).
    """
    if isinstance(raw, dict) and (not raw or set(raw) - set(SECTIONS)):
        return None
    return parse_params(raw, source=point)
