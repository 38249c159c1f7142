"""Evaluate a trained head on `val` and `test`: metrics.json and plot data for `dvc metrics` / `dvc plots`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from sklearn import metrics as sk

from extract.errors import UserError
from extract.files import atomic_write, write_text
from extract.recipe import contract, first_difference
from extract.store import StoreReader
from heads.config import HeadConfig, config_from_dict
from heads.data import HeadData, store_schema
from heads.metrics import evaluate_split
from heads.models import HeadModel, ZeroShotHead, build_head
from heads.tasks import Task
from heads.train import CHECKPOINT, predict_scores


class CheckpointError(UserError):
    """A checkpoint that does not fit the feature stores it would read."""


def load_head(head_dir: str | Path) -> tuple[HeadModel | ZeroShotHead, dict]:
    """The trained model and its checkpoint (config, task, thresholds, input schemas)."""
    path = Path(head_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no trained head at {path}: run its train stage (dvc repro)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    older = CheckpointError(f"{path} was written by an older reelfeat: retrain it (dvc repro)")
    if not all("recipe" in schema for schema in checkpoint.get("inputs", {}).values()):
        raise older
    try:
        config = config_from_dict(checkpoint["config"])
        task = Task(**checkpoint["task"])
        model = build_head(config, {key: schema["dim"] for key, schema in checkpoint["inputs"].items()}, task)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError):
        raise older from None
    return model.eval(), checkpoint


def check_stores(config: HeadConfig, checkpoint: dict, stores: dict[str, str] | None = None) -> None:
    """Refuse a store made another way than the one the head was trained on, naming what differs:
    the whole recipe is compared (views, backbone config, weights sha256, preprocessing), paths aside."""
    for spec in config.inputs:
        path = (stores or {}).get(spec.key, spec.store)
        now, then = store_schema(StoreReader(path)), checkpoint["inputs"][spec.key]
        difference = first_difference(contract(then["recipe"]), contract(now["recipe"]))
        if difference is None and now["dim"] != then["dim"]:
            difference = f"the width is {now['dim']} but the head was trained on {then['dim']}"
        if difference:
            raise CheckpointError(
                f"{path} was made another way than the store head input {spec.key!r} was trained on: "
                f"{difference}. Retrain the head (dvc repro) or use the store it was trained on"
            )


def evaluate(head_dir: str | Path) -> dict:
    """Write metrics.json and plots/ into head_dir; returns the metrics."""
    head_dir = Path(head_dir)
    model, checkpoint = load_head(head_dir)
    config, task = model.config, model.task
    check_stores(config, checkpoint)
    data = HeadData.load(config)
    metrics: dict[str, object] = {}
    plots = head_dir / "plots"
    plots.mkdir(exist_ok=True)
    for split in ("val", "test"):
        videos = data.split(split)
        if len(videos) == 0:
            continue
        truth = task.truth([data.rows[i] for i in videos])
        scores = predict_scores(model, data, videos)
        metrics[split] = evaluate_split(task, truth, scores, checkpoint["thresholds"], config.bootstrap, config.seed)
        if split == "test":
            write_plots(plots, task, truth, scores)
    metrics["classes"] = task.classes
    metrics["missing_videos"] = len(data.missing)
    write_text(head_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    return metrics


def write_plots(folder: Path, task: Task, truth: np.ndarray, scores: np.ndarray) -> None:
    """Plot data of the test split, one CSV per plot, named for dvc.yaml's plot definitions."""
    for old in folder.glob("*.csv"):
        old.unlink()
    if task.kind in ("binary", "multi_label"):
        y, p = truth.reshape(len(truth), -1).ravel(), scores.reshape(len(scores), -1).ravel()
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = sk.roc_curve(y, p)
            _write(folder / "roc.csv", ["fpr", "tpr"], zip(fpr, tpr, strict=True))
            precision, recall, _ = sk.precision_recall_curve(y, p)
            _write(folder / "precision_recall.csv", ["recall", "precision"], zip(recall, precision, strict=True))
    elif task.kind in ("multi_class", "quantile"):
        names = task.classes
        pairs = [(names[int(a)], names[int(b)]) for a, b in zip(truth, scores.argmax(1), strict=True)]
        _write(folder / "confusion.csv", ["actual", "predicted"], pairs)
    else:
        rows = [
            (c, float(a), float(b))
            for j, c in enumerate(task.columns)
            for a, b in zip(truth[:, j], scores[:, j], strict=True)
        ]
        _write(folder / "predicted.csv", ["target", "actual", "predicted"], rows)


def _write(path: Path, header: list[str], rows) -> None:
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([round(v, 6) if isinstance(v, float | np.floating) else v for v in row])
