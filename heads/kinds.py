"""Task kinds, one object each: everything that differs between a yes/no head, a tagger, a classifier
and a regressor lives here, and nowhere else branches on a kind's name.

A kind says which losses it trains with, how manifest columns become targets and logits become
scores, how scores become labels (thresholds tuned on the validation split, or the top class),
which metrics it reports (and which are its headline, with intervals), which plots `evaluate` writes
and the report draws, and how the report ranks its worst test videos. Adding a kind is a class here,
registered in `KINDS`, and its tests. Torch-free at import (the config and `stores` stage read it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

Rows = list[dict[str, str]]


class TaskSpec(Protocol):
    """What a head's config (`heads.config.HeadConfig`) says of its task."""

    task: str
    targets: tuple[str, ...]
    loss_name: str
    pos_weight: float | None
    quantiles: int
    zscore: bool


class TaskKind:
    name: ClassVar[str]
    losses: ClassVar[tuple[str, ...]]  # the losses it trains with; the first is the default
    headline: ClassVar[tuple[str, ...]]  # the metrics given 95% intervals and shown first
    # the val metric a sweep keeps its best configuration by, and early stopping watches; free of
    # thresholds, so every configuration is judged before any are tuned
    selection: ClassVar[str]
    lower_is_better: ClassVar[bool] = False
    chart: ClassVar[str]  # what the report draws of the test split: "roc", "confusion" or "predicted"
    zero_shot: ClassVar[bool] = False  # whether a zero_shot head (label prompts, no training) can do it
    negative_prompt: ClassVar[bool] = False  # zero_shot: a label is weighed against a negative prompt
    columns: ClassVar[str] = "one"  # target columns: "one", or "several" (multi_regression)
    worst: ClassVar[str] = "wrong answers first (false positives and negatives), then the closest calls"

    def fit(self, task: Task, config: TaskSpec, rows: Rows, train: Rows) -> None:
        """Set what the task learns from data: its classes (from every row, so each label has an
        output), and cuts or z-score parameters (from the training rows only)."""
        raise NotImplementedError

    def out_dim(self, task: Task) -> int:
        return len(task.classes)

    def encode(self, task: Task, rows: Rows) -> np.ndarray:
        """Training targets."""
        raise NotImplementedError

    def truth(self, task: Task, rows: Rows) -> np.ndarray:
        """Targets as metrics see them."""
        return self.encode(task, rows)

    def loss(self, task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over the batch, on logits (stable: no sigmoid or softmax before the loss)."""
        from torch.nn import functional as F

        if task.loss_name == "ce":
            return F.cross_entropy(logits, targets)
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[task.loss_name]
        return fn(logits, targets)

    def scores(self, task: Task, logits: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values in the target's own units (regression)."""
        raise NotImplementedError

    def tune_thresholds(self, y_val: np.ndarray, p_val: np.ndarray) -> dict:
        """Decision thresholds from the validation split only ({} where the decision is no cut)."""
        return {}

    def untuned_thresholds(self, out_dim: int) -> dict:
        """The thresholds of a head trained without a validation split."""
        return {}

    def labels(self, task: Task, thresholds: dict, scores: np.ndarray) -> list[str]:
        """The labels a video's scores give (`predict`): none for regression."""
        return []

    def metrics(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> dict[str, float]:
        """Every metric of one split: y as `truth` gives it, p as `scores` gives it."""
        raise NotImplementedError

    def plots(self, task: Task, truth: np.ndarray, scores: np.ndarray) -> dict[str, tuple[list[str], list]]:
        """The test split's plot data: file stem -> (header, rows), as dvc.yaml's plots name them."""
        raise NotImplementedError

    def decisions(
        self, task: Task, thresholds: dict, truth: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[float | None]] | None:
        """Per class: (true, decided, threshold) for the report's per-class table; None where there is none."""
        return None

    def mistake(
        self, task: Task, thresholds: dict, y: np.ndarray, p: np.ndarray, spread: np.ndarray
    ) -> tuple[float, str]:
        """(how wrong, what happened) for one test video: the report lists the worst."""
        raise NotImplementedError

    def resampled(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> Callable[[np.ndarray], dict]:
        """The headline metrics of a resample (video indices drawn with replacement), for the intervals."""
        return lambda index: self.metrics(task, y[index], p[index], thresholds)

    def selection_value(self, task: Task, y: np.ndarray, p: np.ndarray) -> float | None:
        """The selection metric of val truth and scores, or None where val cannot give it (one class)."""
        value = self.metrics(task, y, p, self.untuned_thresholds(p.shape[1])).get(self.selection)
        return float(value) if value is not None and np.isfinite(value) else None

    def zero_shot_logits(self, cosines: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, centred: bool):
        """A zero_shot head's logits from each video's cosines to the label prompts, in the model's scale."""
        return scale * cosines


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.reshape(len(logits), -1)))


def _roc_and_pr(truth: np.ndarray, scores: np.ndarray) -> dict[str, tuple[list[str], list]]:
    from heads.metrics import pr_points, roc_points

    y, p = truth.reshape(len(truth), -1).ravel(), scores.reshape(len(scores), -1).ravel()
    if len(np.unique(y)) != 2:
        return {}
    fpr, tpr = roc_points(y, p)
    recall, precision = pr_points(y, p)
    return {
        "roc": (["fpr", "tpr"], list(zip(fpr, tpr, strict=True))),
        "precision_recall": (["recall", "precision"], list(zip(recall, precision, strict=True))),
    }


class Binary(TaskKind):
    """Yes or no: one 0/1 column, one sigmoid score, one cut tuned for F1 on the validation split."""

    name, losses, headline, chart, zero_shot = "binary", ("bce",), ("f1", "roc_auc"), "roc", True
    selection = "roc_auc"
    negative_prompt = True

    def fit(self, task: Task, config: TaskSpec, rows: Rows, train: Rows) -> None:
        task.classes = [task.columns[0]]

    def out_dim(self, task: Task) -> int:
        return 1

    def encode(self, task: Task, rows: Rows) -> np.ndarray:
        return np.array([float(row[task.columns[0]]) for row in rows], np.float32)

    def loss(self, task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _bce(task, logits.squeeze(-1), targets)

    def scores(self, task: Task, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(logits)

    def tune_thresholds(self, y_val: np.ndarray, p_val: np.ndarray) -> dict:
        from heads.metrics import best_f1_threshold

        return {"global": best_f1_threshold(y_val, p_val[:, 0])}

    def untuned_thresholds(self, out_dim: int) -> dict:
        return {"global": 0.5, "per_class": [0.5] * out_dim}

    def selection_value(self, task: Task, y: np.ndarray, p: np.ndarray) -> float | None:
        from heads.metrics import roc_auc  # ROC-AUC alone: every epoch of every configuration

        return roc_auc(y.astype(int), p[:, 0]) if len(np.unique(y)) == 2 else None

    def labels(self, task: Task, thresholds: dict, scores: np.ndarray) -> list[str]:
        return [task.classes[0]] if float(scores[0]) >= thresholds.get("global", 0.5) else []

    def metrics(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> dict[str, float]:
        from heads.metrics import roc_auc, sklearn_metrics

        sk = sklearn_metrics()
        scores, truth = p[:, 0], y.astype(int)
        predicted = scores >= thresholds["global"]
        out = {
            "accuracy": sk.accuracy_score(truth, predicted),
            "precision": sk.precision_score(truth, predicted, zero_division=0),
            "recall": sk.recall_score(truth, predicted, zero_division=0),
            "f1": sk.f1_score(truth, predicted, zero_division=0),
        }
        if len(np.unique(truth)) == 2:
            out["roc_auc"] = roc_auc(truth, scores)
        return out

    def plots(self, task: Task, truth: np.ndarray, scores: np.ndarray) -> dict[str, tuple[list[str], list]]:
        return _roc_and_pr(truth, scores)

    def zero_shot_logits(self, cosines: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, centred: bool):
        return scale * (cosines[:, :1] - cosines[:, 1:])  # a two-way softmax, as a sigmoid of the difference

    def mistake(
        self, task: Task, thresholds: dict, y: np.ndarray, p: np.ndarray, spread: np.ndarray
    ) -> tuple[float, str]:
        cut, score, yes = thresholds["global"], float(p[0]), bool(y)
        wrong = (score >= cut) != yes
        what = ("false positive" if score >= cut else "false negative") if wrong else "correct, a close call"
        truth = "yes" if yes else "no"
        return abs(float(yes) - score) + wrong, f"{what}: score {score:.2f} (cut {cut:.2f}), truth {truth}"


class MultiLabel(TaskKind):
    """Tags: a comma-separated column, a sigmoid score per label, a cut per label tuned on validation."""

    name, losses, headline, chart, zero_shot = "multi_label", ("bce",), ("hit@1", "map", "gap"), "roc", True
    selection = "map"

    def fit(self, task: Task, config: TaskSpec, rows: Rows, train: Rows) -> None:
        column = task.columns[0]
        task.classes = sorted({name for row in rows for name in row[column].split(",") if name})

    def encode(self, task: Task, rows: Rows) -> np.ndarray:
        index = {name: j for j, name in enumerate(task.classes)}
        y = np.zeros((len(rows), len(task.classes)), np.float32)
        for i, row in enumerate(rows):
            for name in filter(None, row[task.columns[0]].split(",")):
                y[i, index[name]] = 1.0
        return y

    def loss(self, task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _bce(task, logits, targets)

    def scores(self, task: Task, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(logits)

    def tune_thresholds(self, y_val: np.ndarray, p_val: np.ndarray) -> dict:
        from heads.metrics import best_f1_threshold

        flat = best_f1_threshold(y_val.ravel(), p_val.ravel())
        per_class = [
            best_f1_threshold(y_val[:, j], p_val[:, j]) if y_val[:, j].any() else flat for j in range(y_val.shape[1])
        ]
        return {"global": flat, "per_class": per_class}

    def untuned_thresholds(self, out_dim: int) -> dict:
        return {"global": 0.5, "per_class": [0.5] * out_dim}

    def selection_value(self, task: Task, y: np.ndarray, p: np.ndarray) -> float | None:
        from heads.metrics import mean_average_precision  # mAP alone: every epoch of every configuration

        return mean_average_precision(y.astype(int), p)

    def labels(self, task: Task, thresholds: dict, scores: np.ndarray) -> list[str]:
        cuts = thresholds.get("per_class", [0.5] * len(task.classes))
        chosen = [(float(s), name) for name, s, t in zip(task.classes, scores, cuts, strict=True) if s >= t]
        return [name for _, name in sorted(chosen, key=lambda pair: -round(pair[0], 6))]

    def metrics(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> dict[str, float]:
        from heads.metrics import RankedLabels, sklearn_metrics

        sk = sklearn_metrics()
        truth = y.astype(int)
        predicted = p >= np.asarray(thresholds["per_class"])
        ranked, ones = RankedLabels(truth, p), np.ones(len(truth))
        out = {f"hit@{k}": ranked.hit_at(k, ones) for k in (1, 2, 3, 5)}
        return out | {
            "map": ranked.mean_ap(ones),
            "gap": ranked.gap(ones),
            "f1_micro": sk.f1_score(truth, predicted, average="micro", zero_division=0),
            "f1_macro": sk.f1_score(truth, predicted, average="macro", zero_division=0),
            "f1_micro_global": sk.f1_score(truth, p >= thresholds["global"], average="micro", zero_division=0),
            "exact_match": float(np.mean((truth == predicted).all(axis=1))),
        }

    def plots(self, task: Task, truth: np.ndarray, scores: np.ndarray) -> dict[str, tuple[list[str], list]]:
        return _roc_and_pr(truth, scores)

    def decisions(
        self, task: Task, thresholds: dict, truth: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[float | None]] | None:
        cuts = thresholds["per_class"]
        return truth > 0, scores >= np.asarray(cuts), list(cuts)

    def resampled(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> Callable[[np.ndarray], dict]:
        """Sorted once, each resample reweights the videos (see `RankedLabels`): 1,000 resamples of 10,000
        videos x 300 classes take seconds instead of an hour."""
        from heads.metrics import RankedLabels

        ranked = RankedLabels(y, p)

        def headline(index: np.ndarray) -> dict:
            weights = np.bincount(index, minlength=len(y))
            return {"hit@1": ranked.hit_at(1, weights), "map": ranked.mean_ap(weights), "gap": ranked.gap(weights)}

        return headline

    def zero_shot_logits(self, cosines: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, centred: bool):
        if centred:  # CLIP has no trained bias, and its scaled cosines would saturate a sigmoid
            cosines = cosines - cosines.mean(1, keepdim=True)
        return scale * cosines + bias

    def mistake(
        self, task: Task, thresholds: dict, y: np.ndarray, p: np.ndarray, spread: np.ndarray
    ) -> tuple[float, str]:
        wrong = (p >= np.asarray(thresholds["per_class"])) != (y > 0)
        positives = [f"{task.classes[j]} ({p[j]:.2f})" for j in np.flatnonzero(wrong & (y == 0))]
        negatives = [f"{task.classes[j]} ({p[j]:.2f})" for j in np.flatnonzero(wrong & (y > 0))]
        parts = [f"false positives: {', '.join(positives)}"] * bool(positives)
        parts += [f"false negatives: {', '.join(negatives)}"] * bool(negatives)
        true_labels = ", ".join(task.classes[j] for j in np.flatnonzero(y > 0)) or "none"
        what = "; ".join(parts) or "all labels right"
        return float(np.abs(y - p).max()) + wrong.any(), f"{what} (true labels: {true_labels})"


class MultiClass(TaskKind):
    """One class per video: a softmax over the column's values, the top one is the label."""

    name, losses, headline, chart, zero_shot = "multi_class", ("ce",), ("accuracy",), "confusion", True
    selection = "accuracy"

    def fit(self, task: Task, config: TaskSpec, rows: Rows, train: Rows) -> None:
        task.classes = sorted({row[task.columns[0]] for row in rows})

    def encode(self, task: Task, rows: Rows) -> np.ndarray:
        index = {name: j for j, name in enumerate(task.classes)}
        return np.array([index[row[task.columns[0]]] for row in rows], np.int64)

    def scores(self, task: Task, logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        return shifted / shifted.sum(1, keepdims=True)

    def labels(self, task: Task, thresholds: dict, scores: np.ndarray) -> list[str]:
        return [task.classes[int(np.argmax(scores))]]

    def metrics(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> dict[str, float]:
        from heads.metrics import sklearn_metrics

        sk = sklearn_metrics()
        labels = np.arange(p.shape[1])
        out = {
            "accuracy": sk.accuracy_score(y, p.argmax(1)),
            "f1_macro": sk.f1_score(y, p.argmax(1), labels=labels, average="macro", zero_division=0),
        }
        # ranked as scikit-learn's top_k_accuracy_score ranks them, which refuses two classes
        ranked = np.argsort(p, axis=1, kind="mergesort")[:, ::-1]
        for k in (1, 5):
            if k < p.shape[1]:
                out[f"top{k}_accuracy"] = float((ranked[:, :k] == np.asarray(y)[:, None]).any(1).mean())
        return out

    def plots(self, task: Task, truth: np.ndarray, scores: np.ndarray) -> dict[str, tuple[list[str], list]]:
        names = task.classes
        pairs = [(names[int(a)], names[int(b)]) for a, b in zip(truth, scores.argmax(1), strict=True)]
        return {"confusion": (["actual", "predicted"], pairs)}

    def decisions(
        self, task: Task, thresholds: dict, truth: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[float | None]] | None:
        one_hot = np.eye(len(task.classes), dtype=bool)
        return one_hot[truth.astype(np.int64)], one_hot[scores.argmax(1)], [None] * len(task.classes)

    def mistake(
        self, task: Task, thresholds: dict, y: np.ndarray, p: np.ndarray, spread: np.ndarray
    ) -> tuple[float, str]:
        true, guess = int(y), int(p.argmax())
        verdict = "wrong" if guess != true else "right"
        what = f"{verdict}: predicted {task.classes[guess]} ({p[guess]:.2f}), true {task.classes[true]} ({p[true]:.2f})"
        return 1.0 - float(p[true]) + (guess != true), what


class Quantile(MultiClass):
    """A number cut into classes at the training split's quantiles (q1 lowest), then as multi_class."""

    name = "quantile"
    zero_shot = False

    def fit(self, task: Task, config: TaskSpec, rows: Rows, train: Rows) -> None:
        values = np.array([float(row[task.columns[0]]) for row in train])
        task.cuts = np.quantile(values, np.arange(1, config.quantiles) / config.quantiles).tolist()
        task.classes = [f"q{i + 1}" for i in range(config.quantiles)]

    def encode(self, task: Task, rows: Rows) -> np.ndarray:
        values = [float(row[task.columns[0]]) for row in rows]
        return np.searchsorted(task.cuts, values, "right").astype(np.int64)


class Regression(TaskKind):
    """A number: trained on z-scored targets (fitted on train), reported in the column's own units."""

    name, losses, headline, chart = "regression", ("mse", "mae", "huber"), ("mse", "pearson"), "predicted"
    selection, lower_is_better = "mse", True
    worst = "the largest errors, in units of the test targets' spread"

    def fit(self, task: Task, config: TaskSpec, rows: Rows, train: Rows) -> None:
        task.classes = list(task.columns)
        values = np.array([[float(row[c]) for c in task.columns] for row in train])
        task.mean = values.mean(0).tolist() if config.zscore else [0.0] * len(task.columns)
        std = values.std(0) if config.zscore else np.ones(len(task.columns))
        task.std = np.where(std > 0, std, 1.0).tolist()

    def encode(self, task: Task, rows: Rows) -> np.ndarray:
        values = np.array([[float(row[c]) for c in task.columns] for row in rows], np.float32)
        return (values - np.float32(task.mean)) / np.float32(task.std)

    def truth(self, task: Task, rows: Rows) -> np.ndarray:
        return self.encode(task, rows) * np.float32(task.std) + np.float32(task.mean)

    def scores(self, task: Task, logits: np.ndarray) -> np.ndarray:
        return logits * np.float32(task.std) + np.float32(task.mean)

    def metrics(self, task: Task, y: np.ndarray, p: np.ndarray, thresholds: dict) -> dict[str, float]:
        from heads.metrics import pearson, sklearn_metrics

        sk = sklearn_metrics()
        out = {}
        for j, column in enumerate(task.columns):
            out[f"mse/{column}"] = sk.mean_squared_error(y[:, j], p[:, j])
            out[f"mae/{column}"] = sk.mean_absolute_error(y[:, j], p[:, j])
            out[f"pearson/{column}"] = pearson(y[:, j], p[:, j])
        for name in ("mse", "mae", "pearson"):
            out[name] = float(np.mean([out[f"{name}/{c}"] for c in task.columns]))
        return out

    def plots(self, task: Task, truth: np.ndarray, scores: np.ndarray) -> dict[str, tuple[list[str], list]]:
        rows = [
            (c, float(a), float(b))
            for j, c in enumerate(task.columns)
            for a, b in zip(truth[:, j], scores[:, j], strict=True)
        ]
        return {"predicted": (["target", "actual", "predicted"], rows)}

    def mistake(
        self, task: Task, thresholds: dict, y: np.ndarray, p: np.ndarray, spread: np.ndarray
    ) -> tuple[float, str]:
        what = "; ".join(f"{c}: predicted {b:.3g}, true {a:.3g}" for c, a, b in zip(task.classes, y, p, strict=True))
        return float(np.abs((p - y) / spread).mean()), what


class MultiRegression(Regression):
    """Several numbers at once, one output per column."""

    name, headline, columns, selection, lower_is_better = "multi_regression", ("pearson",), "several", "pearson", False


def _bce(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch
    from torch.nn import functional as F

    weight = None if task.pos_weight is None else torch.tensor(task.pos_weight, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)


KINDS: dict[str, TaskKind] = {
    kind.name: kind for kind in (Binary(), MultiLabel(), MultiClass(), Quantile(), Regression(), MultiRegression())
}


# A kind with what it learned from the data, which travels in the checkpoint: its classes, and the
# quantile cuts or z-score mean and std, fitted on the training split only (classes from every row,
# so that every label has an output).
@dataclass
class Task:
    kind: TaskKind  # a kind's name is taken too (a checkpoint's, params')
    columns: tuple[str, ...]
    loss_name: str
    classes: list[str] = field(default_factory=list)  # output names: labels, classes, quartiles or columns
    cuts: list[float] = field(default_factory=list)  # quantile: thresholds between classes
    mean: list[float] = field(default_factory=list)  # regression: z-score parameters
    std: list[float] = field(default_factory=list)
    pos_weight: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.kind, str):
            self.kind = KINDS[self.kind]

    @classmethod
    def fit(cls, config: TaskSpec, rows: list[dict[str, str]], train: list[dict[str, str]]) -> Task:
        """Fit on the training rows (classes are taken from all rows so every label has an output)."""
        task = cls(config.task, config.targets, config.loss_name, pos_weight=config.pos_weight)
        task.kind.fit(task, config, rows, train)
        return task

    @property
    def out_dim(self) -> int:
        return self.kind.out_dim(self)

    def encode(self, rows: list[dict[str, str]]) -> np.ndarray:
        """Training targets: 0/1 (binary, multi-label), class index (multi-class, quantile), z-scored numbers."""
        return self.kind.encode(self, rows)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over the batch, computed on logits (stable: no sigmoid or softmax before the loss)."""
        return self.kind.loss(self, logits, targets)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values in the target's original units (regression)."""
        return self.kind.scores(self, logits)

    def truth(self, rows: list[dict[str, str]]) -> np.ndarray:
        """Targets as metrics see them: regression in original units, the rest as encoded."""
        return self.kind.truth(self, rows)

    def state(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("columns", "loss_name", "classes", "cuts", "mean", "std", "pos_weight")}
        return {"kind": self.kind.name, **state}
