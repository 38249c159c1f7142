"""The report's figures, drawn with matplotlib (Agg, no display) into data URIs for inline <img>:
PNG for charts, JPEG for strips of frames (a tenth of the bytes). Figures are made without pyplot
and drawn under the report's style, so importing this changes nothing for the process. Neither carries a timestamp or a
version, so the same inputs give the same page byte for byte.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as sk

from heads.metrics import average_precisions, pr_points, roc_auc, roc_points

# the report's look, applied while each figure is drawn, never to the process (a notebook keeps its own)
STYLE = {"font.size": 8, "axes.titlesize": 9, "figure.dpi": 100}


def styled(draw: Callable[..., str]) -> Callable[..., str]:
    """Draw under the report's style."""

    @functools.wraps(draw)
    def with_style(*args: Any, **kwargs: Any) -> str:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return with_style


def new_figure(*grid: int, figsize: tuple[float, float], **options: Any) -> tuple[Figure, Any]:
    """A figure and its axes made without pyplot: no backend is chosen and no figure is kept for the process."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)


def data_uri(fig: Figure, kind: str = "png") -> str:
    """The figure as a base64 data URI (PNG for charts, JPEG for frames); the figure is closed."""
    buffer = io.BytesIO()
    options = {"metadata": {"Software": None}} if kind == "png" else {"pil_kwargs": {"quality": 85}}
    fig.savefig(buffer, format=kind, bbox_inches="tight", **options)
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@styled
def roc_and_pr(truth: np.ndarray, scores: np.ndarray, classes: list[str]) -> str:
    """ROC and precision-recall of every (video, label) pair pooled (micro), and per label."""
    fig, (roc, pr) = new_figure(1, 2, figsize=(8, 3.4))
    y, p = truth.reshape(len(truth), -1), scores.reshape(len(scores), -1)
    curves = [("all labels", y.ravel(), p.ravel(), 2.0)]
    if y.shape[1] > 1:
        curves += [(name, y[:, j], p[:, j], 0.8) for j, name in enumerate(classes)]
    for name, yj, pj, width in curves:
        if len(np.unique(yj)) < 2:
            continue  # a label with no positives (or no negatives) in test has no curve
        ap = average_precisions(yj[:, None], pj[:, None])[0]
        roc.plot(*roc_points(yj, pj), lw=width, label=f"{name} (AUC {roc_auc(yj, pj):.2f})")
        pr.step(*pr_points(yj, pj), where="post", lw=width, label=f"{name} (AP {ap:.2f})")
    roc.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)", xlim=(0, 1), ylim=(0, 1.02))
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall (test)", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.legend(fontsize=6, loc="lower right")
    return data_uri(fig)


@styled
def confusion(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> str:
    """Counts of (true class, predicted class) on test."""
    counts = sk.confusion_matrix(truth, predicted, labels=range(len(classes)))
    size = 1.6 + 0.45 * len(classes)
    fig, ax = new_figure(figsize=(size + 0.8, size))
    image = ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > counts.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (test)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return data_uri(fig)


@styled
def predicted_vs_true(truth: np.ndarray, predicted: np.ndarray, columns: list[str]) -> str:
    """One scatter per target, with the diagonal where predictions would be perfect."""
    fig, axes = new_figure(1, len(columns), figsize=(3.2 * len(columns), 3.2), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], columns, strict=True)):
        t, p = truth[:, j], predicted[:, j]
        low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([low, high], [low, high], color="grey", lw=0.5, ls="--")
        ax.scatter(t, p, s=14)
        ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"{name} (test)")
    return data_uri(fig)


@styled
def losses(history: list[dict]) -> str:
    """Train and val loss per epoch."""
    fig, ax = new_figure(figsize=(4, 2.6))
    epochs = [entry["epoch"] for entry in history]
    for key in ("train_loss", "val_loss"):
        if any(key in entry for entry in history):
            ax.plot(epochs, [entry.get(key, np.nan) for entry in history], marker=".", label=key.replace("_", " "))
    ax.set(xlabel="epoch", ylabel="loss", title="training")
    ax.legend(fontsize=6)
    return data_uri(fig)


@styled
def sweep(rows: list[dict], swept: list[str], metric: str) -> str:
    """The val metric of every configuration against each swept value, one panel per key: numbers on
    their own axis (logarithmic where they span a factor of 10 or more), lists and words as categories."""
    fig, axes = new_figure(1, len(swept), figsize=(2.6 * len(swept), 2.4), squeeze=False, sharey=True)
    scores = [np.nan if row[metric] is None else row[metric] for row in rows]
    best = [row["best"] for row in rows]
    for ax, key in zip(axes[0], swept, strict=True):
        values = [row[key] for row in rows]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            x = np.asarray(values, float)
            if x.min() > 0 and x.max() >= 10 * x.min():
                ax.set_xscale("log")
        else:
            names = list(dict.fromkeys(str(v) for v in values))
            x = np.asarray([names.index(str(v)) for v in values], float)
            ax.set_xticks(range(len(names)), names, rotation=30, fontsize=6)
        ax.scatter(x, scores, s=12, alpha=0.7)
        chosen = [i for i, kept in enumerate(best) if kept]
        ax.scatter(x[chosen], np.asarray(scores)[chosen], s=40, facecolors="none", edgecolors="red", label="kept")
        ax.set(xlabel=key, title=key)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    axes[0][0].legend(fontsize=6)
    return data_uri(fig)


@styled
def strip(
    frames: np.ndarray, times: np.ndarray, attention: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
) -> str:
    """Decoded frames side by side, each labelled with its time; under them, where given, each attention
    input's weight per row, placed by the row's time on the strip (between two frames' times in
    proportion), so one sees which moments the head looked at. A JPEG: frames are photographs."""
    count, height, width = frames.shape[:3]
    rows = 2 if attention else 1
    strip_height = 9.0 / count * height / width
    fig, axes = new_figure(
        rows, 1, figsize=(9, strip_height + 0.4 + (1.5 if attention else 0)), squeeze=False, sharex=True,
        gridspec_kw={"height_ratios": [strip_height, 1.5][:rows], "hspace": 0.08},
    )  # fmt: skip
    top = axes[0, 0]
    top.imshow(np.concatenate(list(frames), axis=1), extent=(0, count, 0, 1), aspect="auto")
    top.set(yticks=[], xlim=(0, count))
    slots = np.arange(count) + 0.5
    axes[-1, 0].set_xticks(slots, [f"{t:.1f} s" for t in times])
    if attention:
        ax = axes[1, 0]
        for name, (row_times, weights) in attention.items():
            where = np.interp(row_times, times, slots) if count > 1 else np.full(len(row_times), 0.5)
            gap = float(np.min(np.diff(where))) if len(where) > 1 else 1.0
            ax.bar(where, weights, width=max(gap, 0.02) * 0.8, alpha=0.6, label=name)
        ax.set(ylabel="attention")
        ax.legend(fontsize=6, loc="upper right")
    return data_uri(fig, "jpeg")


SPLIT_MARKERS = {"train": "o", "val": "s", "test": "^"}


@styled
def embedding_map(
    xy: np.ndarray,
    labels: list[str],
    splits: list[str],
    pairs: list[tuple[int, int]],
    agreement: dict[str, float],
    title: str,
) -> str:
    """Left: the 2-D map, a colour per label and a marker per split, leaking duplicate pairs joined.
    Right: per label, the share of each video's nearest neighbours that carry its label (kNN probe)."""
    fig, (ax, bars) = new_figure(1, 2, figsize=(9, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    classes = sorted(set(labels))
    colours = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, j in pairs:
        ax.plot(xy[[i, j], 0], xy[[i, j], 1], color="red", linewidth=0.8, zorder=1)
    label_array, split_array = np.array(labels), np.array(splits)
    from matplotlib.lines import Line2D

    handles = []
    for c, name in enumerate(classes):
        colour = colours(c % colours.N)
        handles.append(Line2D([], [], marker="o", linestyle="", color=colour, label=name))
        for split, marker in SPLIT_MARKERS.items():
            keep = (label_array == name) & (split_array == split)
            if keep.any():
                ax.scatter(*xy[keep].T, s=14, marker=marker, color=colour, zorder=2)
    handles += [Line2D([], [], marker=m, linestyle="", color="grey", label=split) for split, m in SPLIT_MARKERS.items()]
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(handles=handles, fontsize=6, loc="best", markerscale=0.8)
    names = list(agreement)
    bars.barh(names, [agreement[n] for n in names], color=[colours(classes.index(n) % colours.N) for n in names])
    bars.set(xlim=(0, 1), title="kNN probe: neighbours sharing the label", xlabel="share of the 5 nearest")
    bars.invert_yaxis()
    return data_uri(fig)
