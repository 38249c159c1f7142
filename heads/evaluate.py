"""Evaluate a trained head on `val` and `test`: metrics.json and plot data for `dvc metrics` / `dvc plots`,
and the test split's ids, truth and scores (`test_scores.npz`), which the report reads instead of
running the head again."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np

from extract.analysis.insight import INSIGHT, leaking_test_ids
from extract.core.errors import UserError
from extract.core.files import atomic_write, write_text
from heads.checkpoint import load_head
from heads.data import HeadData
from heads.kinds import Task
from heads.train import kept_row, predict_scores, read_sweep

TEST_SCORES = "test_scores.npz"


def evaluate(head_dir: str | Path, insight: str | Path = INSIGHT) -> dict:
    """Write metrics.json and plots/ into head_dir; returns the metrics. Where `insight` holds
    duplicate groups (`insight@<name>` stages), the test metrics are also given without the test
    videos that have a duplicate in train, as `test_leakage_free` (with `dropped`, how many)."""
    head_dir = Path(head_dir)
    model, checkpoint = load_head(head_dir)
    config, task = model.config, model.task
    checkpoint.check_stores()
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
        metrics[split] = evaluate_split(task, truth, scores, checkpoint.thresholds, config.bootstrap, config.seed)
        if split == "test":
            write_plots(plots, task, truth, scores)
            write_scores(head_dir / TEST_SCORES, [data.ids[i] for i in videos], truth, scores)
            leaking, read = leaking_test_ids(Path(insight))
            if read:
                kept = np.array([data.ids[i] not in leaking for i in videos], bool)
                free = (
                    evaluate_split(
                        task, truth[kept], scores[kept], checkpoint.thresholds, config.bootstrap, config.seed
                    )
                    if kept.any()
                    else {}
                )
                metrics["test_leakage_free"] = {**free, "dropped": int((~kept).sum()), "insight": read}
    metrics["classes"] = task.classes
    metrics["missing_videos"] = len(data.missing)
    sweep = read_sweep(head_dir)
    if sweep:  # a sweep's choice, for `dvc metrics show` beside what it scored
        metrics["best"] = {key: value for key, value in kept_row(sweep).items() if key not in ("best", "seconds")}
    write_text(head_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    return metrics


def write_scores(path: Path, ids: list[str], truth: np.ndarray, scores: np.ndarray) -> None:
    """The test split's ids, truth (as `Task.truth` gives it) and scores (as `Task.scores` gives it)."""
    with atomic_write(path, "wb") as handle:
        np.savez(handle, ids=np.asarray(ids, dtype=str), truth=truth, scores=scores)


def read_scores(head_dir: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """What `write_scores` wrote for the head in `head_dir`: ids, truth and scores of its test split."""
    path = Path(head_dir) / TEST_SCORES
    if not path.is_file():
        raise UserError(f"no test scores at {path}: run the head's evaluate stage (dvc repro)")
    try:
        with np.load(path, allow_pickle=False) as saved:
            return [str(vid) for vid in saved["ids"]], saved["truth"], saved["scores"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path} is damaged ({type(exc).__name__}): delete it and rerun the head's evaluate stage (dvc repro)"
        ) from None


def write_plots(folder: Path, task: Task, truth: np.ndarray, scores: np.ndarray) -> None:
    """Plot data of the test split, one CSV per plot, named for dvc.yaml's plot definitions."""
    for old in folder.glob("*.csv"):
        old.unlink()
    for name, (header, rows) in task.kind.plots(task, truth, scores).items():
        _write(folder / f"{name}.csv", header, rows)


def _write(path: Path, header: list[str], rows) -> None:
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([round(v, 6) if isinstance(v, float | np.floating) else v for v in row])


def bootstrap(
    task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict, resamples: int, seed: int
) -> dict[str, list[float]]:
    """95% percentile intervals of the task's headline metrics over videos resampled with replacement."""
    rng = np.random.default_rng(seed)
    names = task.kind.headline
    draws: dict[str, list[float]] = {name: [] for name in names}
    headline = task.kind.resampled(task, y, p, thresholds)
    for _ in range(resamples):
        values = headline(rng.integers(0, len(y), len(y)))
        for name in names:
            if name in values:
                draws[name].append(values[name])
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in draws.items() if v}


def evaluate_split(task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict, resamples: int, seed: int) -> dict:
    """Metrics of one split plus `ci95` intervals of its headline metrics, rounded for stable JSON."""
    out = task.kind.metrics(task, y, p, thresholds)
    if resamples and len(y) > 1:
        out["ci95"] = bootstrap(task, y, p, thresholds, resamples, seed)
    out["n"] = int(len(y))
    return _rounded(out)


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 6)
    return value
