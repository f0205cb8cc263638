"""``colonpipe predict`` and ``colonpipe export``: commands over a trained model.

    colonpipe predict IMAGE... [--question Q | --task cls|reg|rec|cap [--box X1,Y1,X2,Y2] [--category C]]
                      [--model models/finetune/final | models:/colongpt@champion] [--json] [--batch-size N]
    colonpipe export MODEL OUT --format llava [--dtype float32|bfloat16|float16]

``MODEL`` is a saved ColonGPT folder, a training output (``models/<stage>/final``: its adapter
and projector are merged into the base first) or a ``models:/`` URI resolved in the project's
MLflow store (:mod:`colonpipe.register.model_ref`).

``predict`` prints one line per image, in input order: ``IMAGE<TAB>ANSWER`` on stdout (a newline
inside an answer shown as ``\\n``), or with ``--json`` one JSON object per line (``image``,
``question``, and ``answer`` or ``error``). An image that cannot be used (missing, unreadable,
too many pixels) gets an ``error`` line (on stderr without ``--json``) and the others are still
answered; the exit code is 1 if any image failed or the model cannot be loaded, 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from colonpipe.coloninst import BoxTextError
from colonpipe.infer.load import ModelLoadError, load_for_inference
from colonpipe.infer.predict import MAX_PIXELS, human_turn, max_new_tokens_for, predict_images, task_question
from colonpipe.infer.task import resolve_runtime
from colonpipe.model.export_llava import ExportError, check_projector, export_llava
from colonpipe.params import TASKS, InferParams
from colonpipe.register.model_ref import ModelRefError, resolve_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "models/finetune/final"
FORMATS = ("llava",)


def _box(text: str) -> list[int]:
    try:
        box = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected four integers X1,Y1,X2,Y2") from None
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected four integers X1,Y1,X2,Y2")
    return box


def _predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="colonpipe predict", description="Ask a trained ColonGPT about images.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--question", help="the question (default: the first ColonINST template of --task)")
    p.add_argument("--task", choices=TASKS, help="picks the default question and max_new_tokens "
                   "(cls/reg/rec 40, cap 512; 40 without a task)")
    p.add_argument("--box", type=_box, help="reg: the box to name, X1,Y1,X2,Y2 in source-image pixels")
    p.add_argument("--category", help="rec: the category to locate")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model folder or models:/ URI (default {DEFAULT_MODEL})")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--batch-size", type=int, default=8, help="images per generate call (default 8)")
    p.add_argument("--max-new-tokens", type=int, help="override the task's generation budget")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help=f"refuse larger images (default {MAX_PIXELS})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                   help="auto: bf16 on a GPU, fp32 on CPU")
    return p


def _question(args: argparse.Namespace) -> str:
    if args.question is not None:
        return human_turn(args.question)
    return human_turn(task_question(args.task or "cls", box=args.box, category=args.category))


def predict_main(argv: list[str]) -> int:
    """Answer the question for every image; exit 1 if any image (or the model) failed."""
    parser = _predict_parser()
    args = parser.parse_args(argv)
    try:
        question = _question(args)
        if args.batch_size < 1 or (args.max_new_tokens is not None and args.max_new_tokens < 1):
            raise ValueError("--batch-size and --max-new-tokens must be >= 1")
    except (ValueError, BoxTextError) as exc:
        parser.error(str(exc))
    try:
        rt = resolve_runtime(InferParams(device=args.device, dtype=args.dtype))
        model, processor = load_for_inference(resolve_model(args.model), device=rt.device, dtype=rt.dtype,
                                              attn_implementation=rt.attn_implementation)
    except (ModelRefError, ModelLoadError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 1
    budget = args.max_new_tokens or max_new_tokens_for(args.task)
    failed = 0
    for pred in predict_images(model, processor, args.images, question, max_new_tokens=budget,
                               batch_size=args.batch_size, max_pixels=args.max_pixels):
        failed += pred.error is not None
        if args.json:
            print(json.dumps(pred.to_json(), ensure_ascii=False), flush=True)
        elif pred.error is not None:
            print(f"colonpipe predict: error: {pred.error}", file=sys.stderr, flush=True)
        else:  # one line per image: a newline inside an answer is shown as \n (--json keeps it raw)
            answer = pred.answer.replace("\n", "\\n")
            print(f"{pred.image}\t{answer}", flush=True)
    if failed:
        logger.error("%d of %d image(s) could not be answered", failed, len(args.images))
    return 1 if failed else 0


def _projector_type(model_dir: Path) -> str | None:
    """``projector_type`` from the folder's config.json (None when unreadable: the load will say why)."""
    try:
        return json.loads((model_dir / "config.json").read_text()).get("projector_type")
    except (OSError, ValueError, AttributeError):
        return None


def export_main(argv: list[str]) -> int:
    """Write a model in another framework's layout (today: stock transformers LLaVA)."""
    p = argparse.ArgumentParser(prog="colonpipe export", description="Export a ColonGPT for other runtimes.")
    p.add_argument("model", help="saved ColonGPT folder, training output, or models:/ URI")
    p.add_argument("out", type=Path, help="output folder (replaced)")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    args = p.parse_args(argv)
    try:
        model_dir = resolve_model(args.model)
        if args.out.resolve() == model_dir.resolve():
            raise ExportError("the output folder is the model folder itself; choose another OUT")
        projector = _projector_type(model_dir)
        if projector is not None:  # refuse a ppc model before loading any weights
            check_projector(projector)
        model, processor = load_for_inference(model_dir, dtype=args.dtype)
        export_llava(model, processor, args.out)
    except (ModelRefError, ModelLoadError, ExportError) as exc:
        logger.error("%s: %s", args.model, exc)
        return 1
    print(f"exported {args.model} as {args.format} to {args.out}")
    return 0
