"""Metrics over a whole split (never averaged per batch), decision thresholds tuned on `val`, and
bootstrap 95% intervals. Keys are lower-case, as `dvc metrics show` lists them.

The one home of ROC, precision-recall and average precision: `evaluate`'s plot files, its metrics
and the report's figures and per-class table all come from `roc_points`, `pr_points`, `roc_auc` and
`average_precisions`."""

from __future__ import annotations

import numba
import numpy as np


def sklearn_metrics():
    """scikit-learn's metrics module, imported where a metric needs it: its 1.8 s of imports are
    not paid by `train`, which needs only the thresholds below (measured on a 2-core EPYC)."""
    from sklearn import metrics

    return metrics


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score cut that maximizes F1 on (y, p); 0.5 when y has no positives. Ties: nearest to 0.5.

    A sorted sweep: every distinct score (and 0.5) is a candidate, and how many videos and positives
    lie at or above it comes from one sort, so 360,000 scores take milliseconds, not one F1 each.
    F1 = 2 TP / (predicted + positives), so equal F1s are equal floats and ties are exact.
    """
    y = np.asarray(y).astype(bool)
    if not y.any():
        return 0.5
    p = np.asarray(p, np.float64)
    order = np.argsort(p, kind="stable")
    ascending, hits = p[order], y[order]
    candidates = np.unique(np.concatenate([ascending, [0.5]]))
    below = np.searchsorted(ascending, candidates, "left")  # videos scored under each cut
    positives_below = np.concatenate([[0], np.cumsum(hits)])[below]
    tp, predicted = hits.sum() - positives_below, len(p) - below
    f1s = 2 * tp / (predicted + hits.sum())
    best = np.flatnonzero(f1s == f1s.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def hit_at_k(y: np.ndarray, p: np.ndarray, k: int) -> float:
    """Share of videos whose k top-scored labels include a true one (YouTube-8M Hit@k)."""
    return RankedLabels(y, p).hit_at(k, np.ones(len(y)))


def gap(y: np.ndarray, p: np.ndarray, top_k: int = 20) -> float:
    """Global Average Precision as YouTube-8M defines it: each video's top_k predictions pooled,
    ranked by score, average precision over them divided by all true labels."""
    return RankedLabels(y, p, top_k).gap(np.ones(len(y)))


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of one label: false and true positive rates, one point per distinct score."""
    sk = sklearn_metrics()
    fpr, tpr, _ = sk.roc_curve(y, p)
    return fpr, tpr


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve of one label (y must hold both classes)."""
    sk = sklearn_metrics()
    return float(sk.roc_auc_score(y, p))


def pr_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The precision-recall curve of one label: recall and precision, one point per distinct score."""
    sk = sklearn_metrics()
    precision, recall, _ = sk.precision_recall_curve(y, p)
    return recall, precision


def average_precisions(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Average precision of each column of (videos, labels) `y` and `p`, as scikit-learn computes it;
    NaN for a label without positives."""
    ranked = RankedLabels(y, p, top_k=1, hits_at=(1,))
    return _average_precisions(np.ones(len(y)), ranked.order, ranked.hits, ranked.ends)


def mean_average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over classes (with at least one positive) of average precision, as scikit-learn computes it;
    0 where no class has one."""
    per_class = average_precisions(y, p)
    present = ~np.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else 0.0


class RankedLabels:
    """A multi-label split sorted once, so Hit@k, GAP and mAP cost one pass each for any weighting of
    the videos. Weights are how often the bootstrap draws each video: a video drawn twice counts as
    two videos with the same scores, which is exactly what recomputing on the resampled rows gives
    (for GAP, up to the order of equal scores, which the metric leaves open)."""

    def __init__(self, y: np.ndarray, p: np.ndarray, top_k: int = 20, hits_at: tuple[int, ...] = (1, 2, 3, 5)) -> None:
        y, p = np.asarray(y) > 0, np.asarray(p, np.float64)
        # per class, videos from the highest score down; `ends` closes each run of equal scores
        self.order = np.ascontiguousarray(np.argsort(-p, axis=0, kind="stable").T)
        scores = np.take_along_axis(p.T, self.order, 1)
        self.hits = np.take_along_axis(y.T, self.order, 1)
        self.ends = np.ones_like(self.hits)
        self.ends[:, :-1] = scores[:, 1:] != scores[:, :-1]
        # per video, its top labels: Hit@k and the pooled top_k predictions of GAP
        top = np.argsort(-p, axis=1, kind="stable")[:, : max(top_k, *hits_at)]
        top_hits = np.take_along_axis(y, top, axis=1)
        self.hit = {k: top_hits[:, :k].any(axis=1) for k in hits_at}
        pooled = np.take_along_axis(p, top[:, :top_k], axis=1)  # (videos, min(top_k, classes))
        pooled_order = np.argsort(-pooled.ravel(), kind="stable")
        self.pooled_video = (pooled_order // pooled.shape[1]).astype(np.int64)
        self.pooled_hits = top_hits[:, :top_k].ravel()[pooled_order]
        self.labels = y.sum(axis=1)

    def hit_at(self, k: int, weights: np.ndarray) -> float:
        return float(np.sum(weights * self.hit[k]) / np.sum(weights))

    def gap(self, weights: np.ndarray) -> float:
        positives = float(np.sum(weights * self.labels))
        if positives == 0:
            return 0.0
        return float(_pooled_precision_sum(weights[self.pooled_video].astype(np.int64), self.pooled_hits) / positives)

    def mean_ap(self, weights: np.ndarray) -> float:
        per_class = _average_precisions(weights.astype(np.float64), self.order, self.hits, self.ends)
        present = ~np.isnan(per_class)
        return float(per_class[present].mean()) if present.any() else 0.0


@numba.njit(cache=True)
def _average_precisions(weights, order, hits, ends):
    """AP of each class (row of `order`), videos weighted; NaN for a class without positives.

    Over each run of equal scores: (weight of its positives / all positives) x precision at its end,
    which is scikit-learn's sum of recall steps times precision."""
    classes, videos = order.shape
    out = np.full(classes, np.nan)
    for c in range(classes):
        seen, tp, run, total = 0.0, 0.0, 0.0, 0.0
        for i in range(videos):
            w = weights[order[c, i]]
            seen += w
            if hits[c, i]:
                tp += w
                run += w
            if ends[c, i]:
                if run > 0:
                    total += run * tp / seen
                run = 0.0
        if tp > 0:
            out[c] = total / tp
    return out


@numba.njit(cache=True)
def _pooled_precision_sum(copies, hits):
    """Sum of precision at each true prediction down a ranked list whose entries repeat `copies` times."""
    seen, tp, total = 0.0, 0.0, 0.0
    for i in range(len(hits)):
        for _ in range(copies[i]):
            seen += 1.0
            if hits[i]:
                tp += 1.0
                total += tp / seen
    return total


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
