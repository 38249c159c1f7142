"""Tasks: a head's kind (`heads.kinds`) with what it learned from the data, which travels in the
checkpoint: its classes, and the quantile cuts or z-score mean and std, fitted on the training split
only (classes from every row, so that every label has an output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from heads.config import HeadConfig
from heads.kinds import KINDS, TaskKind


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
    def fit(cls, config: HeadConfig, rows: list[dict[str, str]], train: list[dict[str, str]]) -> Task:
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
