"""Tables, plots and DVC-plots data files for scored predictions.

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``)
and deterministically: sorted keys and labels, no timestamps in the PNG metadata. Per split
(``plots_dir`` below is ``plots/{split}``):

- ``cls_confusion.png`` / ``reg_confusion.png`` and ``*_confusion.csv`` (``actual,predicted``,
  for DVC's ``confusion`` template). Predictions outside the answer labels read ``(other)``,
  missing ones ``(none)``. At most :data:`MAX_PLOT_LABELS` answer labels are kept (the most
  frequent), the rest read ``(rest)``: an N x N figure grows as N squared, and more labels
  than ColonINST's 39 categories means a wrong file (a CAP file scored as CLS).
- ``rec_iou_hist.png`` (with the 0.5 line) and ``rec_iou_hist.csv`` (``bin,count``, for the
  ``bar_horizontal`` template); failures are IoU 0 and fall in the first bin.
- ``by_dataset.png`` (one panel per task; the :data:`MAX_PLOT_LABELS` largest datasets) and
  ``{task}_by_dataset.csv`` (``dataset,value``, every dataset).

Text that UTF-8 cannot encode (lone surrogates, legal in JSON input) is escaped, never fatal.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from colonpipe import atomic
from colonpipe.evaluate.metrics import IOU_THRESHOLD  # noqa: E402
from colonpipe.evaluate.score import headline  # noqa: E402

logger = logging.getLogger(__name__)

OTHER, NONE, REST = "(other)", "(none)", "(rest)"
MAX_PLOT_LABELS = 64  # labels per plot axis: ColonINST has 39 CLS categories and a few dozen datasets
DATASET_METRIC = {"cls": "accuracy", "reg": "accuracy", "rec": "avg_iou", "cap": "rouge_l"}


# ----------------------------------------------------------------------------- files
def write_json(path: Path, data: object) -> Path:
    """Atomically write metrics JSON: indented, sorted keys, floats at full precision.

    Strict JSON: a NaN or infinity raises ``ValueError`` naming ``path`` (``NaN`` is not
    JSON and many readers refuse it); the scorer never produces one.
    """
    return atomic.write_json(path, data, sort_keys=True, allow_nan=False)


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Atomically save ``fig`` as PNG without the version/date metadata, then close it."""
    try:
        return atomic.write_png(path, fig, metadata={"Software": None})
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- table
def format_table(results: dict[str, dict]) -> str:
    """Plain-text table: one row per scored file with its task's headline metrics (4 decimals)."""
    lines = []
    for name, result in results.items():
        head = headline(result)
        cells = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in head.items()]
        lines.append(f"{result['task'].upper():<4} {name}\n     " + "  ".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots
def plot_text(text: str) -> str:
    """``text`` safe as a matplotlib label: lone surrogates escaped, ``$`` not read as math."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("$", r"\$")


def most_frequent(counts: Counter, k: int = MAX_PLOT_LABELS) -> list[str]:
    """The ``k`` keys of ``counts`` with the highest counts (ties by name), sorted by name."""
    return sorted(sorted(counts, key=lambda key: (-counts[key], key))[:k])


def confusion_pairs(records: list[dict]) -> tuple[list[str], list[tuple[str, str]]]:
    """Sorted answer labels and ``(actual, predicted)`` pairs, off-label predictions mapped.

    Beyond :data:`MAX_PLOT_LABELS` answer labels, the rarer ones become ``(rest)`` (last row).
    """
    counts = Counter(r["actual"] for r in records)
    labels = most_frequent(counts)
    known = set(labels)
    if len(counts) > len(labels):
        logger.warning("%d answer labels: plotting the %d most frequent, the rest as %s",
                       len(counts), len(labels), REST)
        labels.append(REST)
    pairs = []
    for r in records:
        pred, actual = r["predicted"], r["actual"]
        pairs.append((actual if actual in known else REST, NONE if pred is None else pred if pred in known else OTHER))
    return labels, pairs


def plot_confusion(records: list[dict], png: Path, csv_path: Path, *, title: str) -> list[Path]:
    """Confusion matrix PNG (rows actual, columns predicted) and its ``actual,predicted`` CSV."""
    labels, pairs = confusion_pairs(records)
    cols = labels + [x for x in (OTHER, NONE) if any(p == x for _, p in pairs)]
    matrix = np.zeros((len(labels), len(cols)), dtype=int)
    for actual, pred in pairs:
        matrix[labels.index(actual), cols.index(pred)] += 1
    size = 2.5 + 0.45 * max(len(cols), 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), [plot_text(c) for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), [plot_text(c) for c in labels], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    if len(cols) <= 25:
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                        color="white" if v > matrix.max() / 2 else "black")
    fig.tight_layout()
    return [save_figure(fig, png), atomic.write_csv(csv_path, ["actual", "predicted"], [list(p) for p in pairs])]


def plot_iou_histogram(ious: list[float], png: Path, csv_path: Path, *, bins: int, title: str) -> list[Path]:
    """REC IoU histogram over ``[0, 1]`` with the 0.5 threshold line, and its ``bin,count`` CSV."""
    counts, edges = np.histogram(np.asarray(ious, dtype=float), bins=bins, range=(0.0, 1.0))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", edgecolor="black", linewidth=0.4)
    ax.axvline(IOU_THRESHOLD, color="red", linestyle="--", label=f"IoU = {IOU_THRESHOLD}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_ylabel("records")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    rows = [[f"{lo:.2f}-{hi:.2f}", int(c)] for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return [save_figure(fig, png), atomic.write_csv(csv_path, ["bin", "count"], rows)]


def plot_dataset_bars(results: dict[str, dict], png: Path, csv_dir: Path, *, title: str) -> list[Path]:
    """One horizontal bar panel per task (its :data:`DATASET_METRIC` per source dataset)."""
    tasks = [t for t in DATASET_METRIC if t in results]
    written = []
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(4.5 * max(len(tasks), 1), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = DATASET_METRIC[task]
        by = results[task]["by_dataset"]
        names = sorted(by)
        values = {n: by[n]["mean"] if "mean" in by[n] else by[n][metric] for n in names}
        shown = most_frequent(Counter({n: by[n]["n"] for n in names}))
        ax.barh(range(len(shown)), [values[n] for n in shown])
        ax.set_yticks(range(len(shown)), [plot_text(n) for n in shown])
        ax.set_xlim(0, 1)
        cut = f" ({len(shown)} largest of {len(names)})" if len(shown) < len(names) else ""
        ax.set_title(f"{task.upper()} {metric}{cut}")
        ax.tick_params(axis="y", labelsize=7)
        rows = [[n, values[n]] for n in names]
        written.append(atomic.write_csv(csv_dir / f"{task}_by_dataset.csv", ["dataset", "value"], rows))
    fig.suptitle(title)
    fig.tight_layout()
    return [save_figure(fig, png), *written]


def write_plots(results: dict[str, dict], plots_dir: Path, *, label: str, iou_bins: int = 20) -> list[Path]:
    """All plots and plot data for one split's ``{task: score dict}``; returns the paths written."""
    plots_dir = Path(plots_dir)
    paths: list[Path] = []
    for task in ("cls", "reg"):
        if task in results and results[task]["records"]:
            paths += plot_confusion(results[task]["records"], plots_dir / f"{task}_confusion.png",
                                    plots_dir / f"{task}_confusion.csv", title=f"{label} {task.upper()}")
    if "rec" in results:
        ious = [r["iou"] for r in results["rec"]["records"]]
        rec = results["rec"]
        title = f"{label} REC IoU (avg {rec['avg_iou']:.3f}"
        title += f", mean-box baseline {rec['baseline_avg_iou']:.3f})" if "baseline_avg_iou" in rec else ")"
        paths += plot_iou_histogram(ious, plots_dir / "rec_iou_hist.png", plots_dir / "rec_iou_hist.csv",
                                    bins=iou_bins, title=title)
    if results:
        paths += plot_dataset_bars(results, plots_dir / "by_dataset.png", plots_dir, title=f"{label} by dataset")
    logger.info("wrote %d plot files under %s", len(paths), plots_dir)
    return paths
