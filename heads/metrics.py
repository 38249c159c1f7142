"""Metrics over a whole split (never averaged per batch), decision thresholds tuned on `val`, and
bootstrap 95% intervals. Keys are lower-case, as `dvc metrics show` lists them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn import metrics as sk

from heads.tasks import Task


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score cut that maximizes F1 on (y, p); 0.5 when y has no positives. Ties: nearest to 0.5."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return 0.5
    candidates = np.unique(np.concatenate([p, [0.5]]))
    f1s = np.array([sk.f1_score(y, p >= t, zero_division=0) for t in candidates])
    best = np.flatnonzero(f1s == f1s.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def tune_thresholds(task: Task, y_val: np.ndarray, p_val: np.ndarray) -> dict:
    """Thresholds from the validation split only: binary one cut; multi-label a global cut and one per class."""
    if task.kind == "binary":
        return {"global": best_f1_threshold(y_val, p_val[:, 0])}
    if task.kind == "multi_label":
        flat = best_f1_threshold(y_val.ravel(), p_val.ravel())
        per_class = [
            best_f1_threshold(y_val[:, j], p_val[:, j]) if y_val[:, j].any() else flat for j in range(y_val.shape[1])
        ]
        return {"global": flat, "per_class": per_class}
    return {}


def hit_at_k(y: np.ndarray, p: np.ndarray, k: int) -> float:
    """Share of videos whose k top-scored labels include a true one (YouTube-8M Hit@k)."""
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.take_along_axis(y, top, axis=1).max(axis=1) > 0))


def gap(y: np.ndarray, p: np.ndarray, top_k: int = 20) -> float:
    """Global Average Precision as YouTube-8M defines it: each video's top_k predictions pooled,
    ranked by score, average precision over them divided by all true labels."""
    top = np.argsort(-p, axis=1, kind="stable")[:, :top_k]
    scores = np.take_along_axis(p, top, axis=1).ravel()
    hits = np.take_along_axis(y, top, axis=1).ravel() > 0
    positives = float((y > 0).sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = hits[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / positives)


def mean_average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over classes (with at least one positive) of average precision."""
    aps = [sk.average_precision_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if y[:, j].any()]
    return float(np.mean(aps)) if aps else 0.0


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def compute(task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> dict[str, float]:
    """All metrics of the task on one split: y as Task.truth gives it, p as Task.scores gives it."""
    if task.kind == "binary":
        scores, truth = p[:, 0], y.astype(int)
        predicted = scores >= thresholds["global"]
        out = {
            "accuracy": sk.accuracy_score(truth, predicted),
            "precision": sk.precision_score(truth, predicted, zero_division=0),
            "recall": sk.recall_score(truth, predicted, zero_division=0),
            "f1": sk.f1_score(truth, predicted, zero_division=0),
        }
        if len(np.unique(truth)) == 2:
            out["roc_auc"] = sk.roc_auc_score(truth, scores)
        return out
    if task.kind == "multi_label":
        truth = y.astype(int)
        predicted = p >= np.asarray(thresholds["per_class"])
        out = {f"hit@{k}": hit_at_k(truth, p, k) for k in (1, 2, 3, 5)}
        out |= {
            "map": mean_average_precision(truth, p),
            "gap": gap(truth, p, 20),
            "f1_micro": sk.f1_score(truth, predicted, average="micro", zero_division=0),
            "f1_macro": sk.f1_score(truth, predicted, average="macro", zero_division=0),
            "f1_micro_global": sk.f1_score(truth, p >= thresholds["global"], average="micro", zero_division=0),
            "exact_match": float(np.mean((truth == predicted).all(axis=1))),
        }
        return out
    if task.kind in ("multi_class", "quantile"):
        labels = np.arange(p.shape[1])
        out = {
            "accuracy": sk.accuracy_score(y, p.argmax(1)),
            "f1_macro": sk.f1_score(y, p.argmax(1), labels=labels, average="macro", zero_division=0),
        }
        for k in (1, 5):
            if k < p.shape[1]:
                out[f"top{k}_accuracy"] = sk.top_k_accuracy_score(y, p, k=k, labels=labels)
        return out
    out = {}
    for j, column in enumerate(task.columns):
        out[f"mse/{column}"] = sk.mean_squared_error(y[:, j], p[:, j])
        out[f"mae/{column}"] = sk.mean_absolute_error(y[:, j], p[:, j])
        out[f"pearson/{column}"] = pearson(y[:, j], p[:, j])
    for name in ("mse", "mae", "pearson"):
        out[name] = float(np.mean([out[f"{name}/{c}"] for c in task.columns]))
    return out


HEADLINE = {
    "binary": ("f1", "roc_auc"),
    "multi_label": ("hit@1", "map", "gap"),
    "multi_class": ("accuracy",),
    "quantile": ("accuracy",),
    "regression": ("mse", "pearson"),
    "multi_regression": ("pearson",),
}


def bootstrap(
    metric: Callable[[np.ndarray, np.ndarray], dict],
    y: np.ndarray,
    p: np.ndarray,
    names: tuple[str, ...],
    resamples: int,
    seed: int,
) -> dict[str, list[float]]:
    """95% percentile intervals of the named metrics over videos resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(resamples):
        index = rng.integers(0, len(y), len(y))
        values = metric(y[index], p[index])
        for name in names:
            if name in values:
                draws[name].append(values[name])
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in draws.items() if v}


def evaluate_split(task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict, resamples: int, seed: int) -> dict:
    """Metrics of one split plus `ci95` intervals of its headline metrics, rounded for stable JSON."""
    out = compute(task, y, p, thresholds)
    if resamples and len(y) > 1:

        def metric(yy, pp):
            return compute(task, yy, pp, thresholds)

        out["ci95"] = bootstrap(metric, y, p, HEADLINE[task.kind], resamples, seed)
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
