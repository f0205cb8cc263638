"""Training reports for DVC and MLflow: ``train_metrics.json``, ``loss.csv`` and ``loss_curve.png``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from colonpipe import atomic
from colonpipe.model.checkpoint_files import write_json

logger = logging.getLogger(__name__)


def summarize(state: Any, counts: Any, *, skipped: int) -> dict[str, Any]:
    """Metrics of a finished run. ``final_loss`` is the mean over the last 5% of steps (at least
    one) so a single noisy batch does not decide it; ``first_loss`` is the first step's loss."""
    losses = [row["loss"] for row in state.history]
    tail = losses[-max(1, len(losses) // 20):] if losses else [float("nan")]
    seconds = max(state.train_seconds, 1e-9)
    return {
        "first_loss": losses[0] if losses else float("nan"),
        "final_loss": sum(tail) / len(tail),
        "steps": state.global_step,
        "samples": state.samples,
        "samples_per_s": state.samples / seconds,
        "tokens_per_s": state.tokens / seconds,
        "train_seconds": state.train_seconds,
        "params_trainable": counts.trainable,
        "params_frozen": counts.frozen,
        "skipped_records": skipped,
        "resumed_from_step": state.resumed_from if state.resumed_from is not None else -1,
    }


def plot_loss(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    """Loss per optimizer step (left axis) and the LM / projector learning rates (right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in history], color="tab:blue", lw=1.2, label="loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    lr_ax = ax.twinx()
    for key, color in (("lr", "tab:orange"), ("lr_projector", "tab:green")):
        if any(r.get(key) for r in history):
            lr_ax.plot(steps, [r.get(key, 0.0) for r in history], color=color, lw=0.8, ls="--", label=key)
    lr_ax.set_ylabel("learning rate")
    fig.legend(loc="upper right")
    fig.tight_layout()
    try:
        atomic.write_png(path, fig)
    finally:
        plt.close(fig)


def write_reports(out_dir: Path, state: Any, counts: Any, *, skipped: int, stage: str) -> dict[str, Any]:
    """Write the three report files under ``out_dir``; return the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = summarize(state, counts, skipped=skipped)
    write_json(out_dir / "train_metrics.json", metrics)
    columns = ["step", "loss", "lr", "lr_projector"]
    atomic.write_csv(out_dir / "loss.csv", columns, [[row.get(c, "") for c in columns] for row in state.history])
    plot_loss(state.history, out_dir / "loss_curve.png", title=f"{stage}: training loss")
    logger.info("%s: loss %.4f -> %.4f over %d steps, %.1f samples/s", stage, metrics["first_loss"],
                metrics["final_loss"], metrics["steps"], metrics["samples_per_s"])
    return metrics
