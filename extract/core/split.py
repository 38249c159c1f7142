"""Seeded train/val/test splits that keep label proportions.

Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011), the method the DADS 7202
seed used for multi-label data. Given one-hot rows of a single-label target, it reduces to
plain per-class proportional allocation, so one function serves both kinds of target.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def iterative_stratification(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> np.ndarray:
    """Assign each row of a (n, k) 0/1 label matrix to a fold; returns fold index per row.

    Rarest labels are placed first, each example going to the fold that still wants most of
    that label (ties: the fold that wants most examples overall, then random). Rows without
    any label are spread last by overall demand.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=bool)
    n, k = labels.shape
    fractions_arr = np.asarray(fractions, dtype=np.float64) / np.sum(fractions)
    want_total = fractions_arr * n
    want_label = fractions_arr[:, None] * labels.sum(axis=0)[None, :]
    fold = np.full(n, -1)
    left = labels.copy()
    while left.any():
        counts = left.sum(axis=0).astype(float)
        counts[counts == 0] = np.inf
        label = int(np.argmin(counts))
        rows = np.flatnonzero(left[:, label])
        rng.shuffle(rows)
        for row in rows:
            demand = want_label[:, label]
            best = np.flatnonzero(demand == demand.max())
            if len(best) > 1:
                totals = want_total[best]
                best = best[totals == totals.max()]
            chosen = int(rng.choice(best))
            fold[row] = chosen
            want_label[chosen] -= labels[row]
            want_total[chosen] -= 1
            left[row] = False
    for row in rng.permutation(np.flatnonzero(fold < 0)):
        best = np.flatnonzero(want_total == want_total.max())
        chosen = int(rng.choice(best))
        fold[row] = chosen
        want_total[chosen] -= 1
    return fold


def make_split(label_sets: list[frozenset[str]] | None, n: int, fractions: tuple[float, ...], seed: int) -> list[str]:
    """Split names for n rows, stratified by each row's label set (None: purely random)."""
    if label_sets is None:
        label_sets = [frozenset()] * n
    names = sorted(set().union(*label_sets))
    matrix = np.zeros((n, len(names)), dtype=bool)
    column = {name: j for j, name in enumerate(names)}
    for i, labels in enumerate(label_sets):
        matrix[i, [column[name] for name in labels]] = True
    return [SPLITS[f] for f in iterative_stratification(matrix, fractions, seed)]
