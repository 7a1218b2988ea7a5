"""What an evaluation leaves behind: the JSON results, a confusion-matrix PNG and a reliability-diagram PNG beside
them (the wandb log is ``wandb_report``'s)."""

from __future__ import annotations

from pathlib import Path

from ..data import read_json_object
from ..labeling.run_files import write_json_atomic
from .metrics import ConfusionMatrix

# What a results JSON says it is ("format"): evaluate.py writes it; --predictions_file and --baseline check it.
RESULTS_FORMAT = "prompt-distill-evaluation/1"


def png_path_for(json_path) -> Path:
    """``results.json`` -> ``results.confusion.png`` in the same folder."""
    path = Path(json_path)
    return path.with_name(path.stem + ".confusion.png")


def reliability_path_for(json_path) -> Path:
    """``results.json`` -> ``results.reliability.png`` in the same folder."""
    path = Path(json_path)
    return path.with_name(path.stem + ".reliability.png")


def write_json(path, payload: dict) -> Path:
    """Written to a temporary name and renamed, so a crash never leaves half a results file."""
    path = Path(path)
    write_json_atomic(path, payload)
    return path


read_json = read_json_object  # saved predictions are read like every other JSON object file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _save(figure, plt, path) -> Path:
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def confusion_png(path, matrix: ConfusionMatrix, title: str, row_name: str = "gold") -> Path:
    """Row-normalised colours (so small labels are as visible as large ones), raw counts written in the cells."""
    plt = _pyplot()

    counts = matrix.as_array()
    shares = [[value / max(sum(row), 1) for value in row] for row in counts]
    size = 1.5 + 0.45 * len(matrix.columns)
    figure, axes = plt.subplots(figsize=(size + 1.0, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(matrix.columns)), labels=list(matrix.columns))
    axes.set_yticks(range(len(matrix.rows)), labels=list(matrix.rows))
    axes.set_xlabel("predicted (? = unparseable)")
    axes.set_ylabel(row_name)
    axes.set_title(title)
    for row, values in enumerate(counts):
        for column, value in enumerate(values):
            if value:
                colour = "white" if shares[row][column] > 0.5 else "black"
                axes.text(column, row, str(value), ha="center", va="center", fontsize=8, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
    return _save(figure, plt, path)


def reliability_png(path, confidence: dict, title: str) -> Path:
    """The reliability diagram of ``calibration.confidence_summary``: per bin, accuracy (bars) against the
    diagonal of perfect calibration, the bin's mean confidence marked, and the sentence count below."""
    plt = _pyplot()
    bins = confidence["reliability"]
    figure, (axes, counts) = plt.subplots(2, 1, figsize=(5.5, 6.0), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["upper"] - bins[0]["lower"]
    filled = [entry for entry in bins if entry["count"]]
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.bar([entry["lower"] for entry in filled], [entry["accuracy"] for entry in filled], width=width,
             align="edge", edgecolor="black", color="tab:blue", alpha=0.7, label="accuracy in the bin")
    axes.scatter([entry["mean_confidence"] for entry in filled], [entry["accuracy"] for entry in filled],
                 color="tab:red", zorder=3, s=14, label="mean confidence in the bin")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    counts.bar([entry["lower"] for entry in bins], [entry["count"] for entry in bins], width=width, align="edge",
               edgecolor="black", color="lightgrey")
    counts.set_xlabel(f"confidence (probability of the chosen label), {len(bins)} equal-width bins")
    counts.set_ylabel("sentences")
    return _save(figure, plt, path)
