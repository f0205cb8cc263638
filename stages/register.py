"""Stage ``register``: register the finetuned model; ``champion`` moves only if it wins.

    python stages/register.py --metrics metrics/test.json --metrics-val metrics/val.json \\
        --model-dir models/finetune/final --merged-out models/finetune/merged --out registry.json

Merges the training output into ``--merged-out`` (bfloat16, a folder that loads on its own: the
DVC artifact ``colongpt``), logs the metrics and that folder (as the servable MLflow pyfunc that
carries the colonpipe wheel: ``colonpipe.register.model_log``) to this stage's MLflow run,
registers it as a new version of params ``register.model_name``, applies the promotion rule,
appends the decision to ``--out`` (which DVC must keep: ``persist: true``) and writes the full
model card (metrics, decision, lineage, params) into the registered model and ``--merged-out``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from colonpipe.params import flatten
from colonpipe.register.cards import CardSources
from colonpipe.register.registry import RegistryError, register_model
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run

logger = logging.getLogger("stages.register")


def add_arguments(parser) -> None:
    parser.add_argument("--metrics", type=Path, required=True, help="test metrics JSON (dvc metrics)")
    parser.add_argument("--metrics-val", type=Path, help="val metrics JSON (optional, prefix 'val.')")
    parser.add_argument("--model-dir", type=Path, required=True, help="the candidate model folder")
    parser.add_argument("--merged-out", type=Path, default=None,
                        help="merge a training output here (bfloat16) and register that folder")
    parser.add_argument("--plots-dir", type=Path, default=Path("plots"), help="evaluate's plots (per-dataset scores)")
    parser.add_argument("--ingest-report", type=Path, default=Path("data/interim/ingest_report.json"))
    parser.add_argument("--out", type=Path, default=Path("registry.json"), help="decision log")
    parser.add_argument("--artifact-path", default="model", help="name of the logged pyfunc model")


def run(args, cfg) -> None:
    metrics = [args.metrics] + ([args.metrics_val] if args.metrics_val else [])
    with stage_run("register", params=flatten(cfg, "register"), inputs=[*metrics, args.model_dir]) as log:
        card = CardSources(metrics_dir=args.metrics.parent, plots_dir=args.plots_dir, params_path=args.params,
                           ingest_report=args.ingest_report)
        decision = register_model(
            cfg, log, metrics_paths=metrics, model_dir=args.model_dir, registry_path=args.out,
            artifact_path=args.artifact_path, merged_dir=args.merged_out, card=card,
        )
    verdict = "PROMOTED to champion" if decision.promoted else "not promoted"
    print(f"{decision.model_name} v{decision.candidate_version}: {verdict}: {decision.reason}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("register", __doc__, add_arguments, run, argv, errors=(RegistryError,))


if __name__ == "__main__":
    sys.exit(main())
