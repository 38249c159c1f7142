"""Tasks: how manifest columns become training targets, which loss applies, and what scores mean.

Everything fitted on data (class lists, quantile cuts, z-score mean and std) is fitted on the
training split only and travels in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from heads.config import HeadConfig


@dataclass
class Task:
    kind: str
    columns: tuple[str, ...]
    loss_name: str
    classes: list[str] = field(default_factory=list)  # output names: labels, classes, quartiles or columns
    cuts: list[float] = field(default_factory=list)  # quantile: thresholds between classes
    mean: list[float] = field(default_factory=list)  # regression: z-score parameters
    std: list[float] = field(default_factory=list)
    pos_weight: float | None = None

    @classmethod
    def fit(cls, config: HeadConfig, rows: list[dict[str, str]], train: list[dict[str, str]]) -> Task:
        """Fit on the training rows (classes are taken from all rows so every label has an output)."""
        task = cls(config.task, config.targets, config.loss_name, pos_weight=config.pos_weight)
        column = config.targets[0]
        if task.kind == "binary":
            task.classes = [column]
        elif task.kind == "multi_label":
            task.classes = sorted({name for row in rows for name in row[column].split(",") if name})
        elif task.kind == "multi_class":
            task.classes = sorted({row[column] for row in rows})
        elif task.kind == "quantile":
            values = np.array([float(row[column]) for row in train])
            task.cuts = np.quantile(values, np.arange(1, config.quantiles) / config.quantiles).tolist()
            task.classes = [f"q{i + 1}" for i in range(config.quantiles)]
        else:
            task.classes = list(config.targets)
            values = np.array([[float(row[c]) for c in config.targets] for row in train])
            task.mean = values.mean(0).tolist() if config.zscore else [0.0] * len(config.targets)
            std = values.std(0) if config.zscore else np.ones(len(config.targets))
            task.std = np.where(std > 0, std, 1.0).tolist()
        return task

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "binary" else len(self.classes)

    @property
    def is_regression(self) -> bool:
        return self.kind in ("regression", "multi_regression")

    def encode(self, rows: list[dict[str, str]]) -> np.ndarray:
        """Training targets: 0/1 (binary, multi-label), class index (multi-class, quantile), z-scored numbers."""
        column = self.columns[0]
        if self.kind == "binary":
            return np.array([float(row[column]) for row in rows], np.float32)
        if self.kind == "multi_label":
            index = {name: j for j, name in enumerate(self.classes)}
            y = np.zeros((len(rows), len(self.classes)), np.float32)
            for i, row in enumerate(rows):
                for name in filter(None, row[column].split(",")):
                    y[i, index[name]] = 1.0
            return y
        if self.kind == "multi_class":
            index = {name: j for j, name in enumerate(self.classes)}
            return np.array([index[row[column]] for row in rows], np.int64)
        if self.kind == "quantile":
            return np.searchsorted(self.cuts, [float(row[column]) for row in rows], "right").astype(np.int64)
        values = np.array([[float(row[c]) for c in self.columns] for row in rows], np.float32)
        return (values - np.float32(self.mean)) / np.float32(self.std)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over the batch, computed on logits (stable: no sigmoid or softmax before the loss)."""
        if self.loss_name == "bce":
            logits = logits.squeeze(-1) if self.kind == "binary" else logits
            weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
            return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
        if self.loss_name == "ce":
            return F.cross_entropy(logits, targets)
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[self.loss_name]
        return fn(logits, targets)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values in the target's original units (regression)."""
        if self.kind in ("binary", "multi_label"):
            return 1.0 / (1.0 + np.exp(-logits.reshape(len(logits), -1)))
        if self.kind in ("multi_class", "quantile"):
            shifted = np.exp(logits - logits.max(1, keepdims=True))
            return shifted / shifted.sum(1, keepdims=True)
        return logits * np.float32(self.std) + np.float32(self.mean)

    def truth(self, rows: list[dict[str, str]]) -> np.ndarray:
        """Targets as metrics see them: regression in original units, the rest as encoded."""
        encoded = self.encode(rows)
        return encoded * np.float32(self.std) + np.float32(self.mean) if self.is_regression else encoded

    def state(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("kind", "columns", "loss_name", "classes", "cuts", "mean", "std", "pos_weight")
        }
