"""A trained head's checkpoint (`model.pt`): its weights and everything needed to use them.

One save (`Checkpoint.save`, by `train`) and one load (`load_head`, by `evaluate`, `predict` and the
report). On disk it is a plain dict of tensors, strings and numbers, so it loads with
`torch.load(weights_only=True)`; here it is typed: the head's config, its task, the thresholds tuned
on `val`, and per input the width and `Recipe` of the store it was trained on, against which every
store it reads later is checked (`Checkpoint.check_stores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from extract.core.errors import UserError
from extract.core.files import atomic_write
from extract.core.recipe import Recipe
from extract.store import StoreReader
from heads.config import HeadConfig, config_from_dict, config_to_dict
from heads.kinds import Task
from heads.models import HeadModel, ZeroShotHead, build_head

CHECKPOINT = "model.pt"


class CheckpointError(UserError):
    """A checkpoint that is missing, of an older reelfeat, or does not fit the stores it would read."""


@dataclass(frozen=True)
class InputSchema:
    """What a trained head remembers of a store it read: the row width and how the rows were made."""

    dim: int
    recipe: Recipe

    @classmethod
    def of_store(cls, reader: StoreReader) -> InputSchema:
        return cls(int(reader.row_shape[0]), reader.recipe)


@dataclass(frozen=True)
class Checkpoint:
    config: HeadConfig
    task: Task
    state_dict: dict[str, torch.Tensor]
    thresholds: dict[str, Any]  # binary: global; multi-label: global and per_class (tuned on val)
    inputs: dict[str, InputSchema]  # by input key

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint; the file is replaced only once it is whole."""
        inputs = {key: {"dim": s.dim, "recipe": s.recipe.to_dict()} for key, s in self.inputs.items()}
        values = {
            "config": config_to_dict(self.config),
            "task": self.task.state(),
            "state_dict": self.state_dict,
            "thresholds": self.thresholds,
            "inputs": inputs,
        }
        with atomic_write(path, "wb") as handle:
            torch.save(values, handle)
        return Path(path)

    @classmethod
    def load(cls, head_dir: str | Path) -> Checkpoint:
        path = Path(head_dir) / CHECKPOINT
        if not path.is_file():
            raise CheckpointError(f"no trained head at {path}: run its train stage (dvc repro)")
        values = torch.load(path, map_location="cpu", weights_only=True)
        older = CheckpointError(f"{path} was written by an older reelfeat: retrain it (dvc repro)")
        try:
            inputs = {key: InputSchema(int(s["dim"]), Recipe.of(s["recipe"])) for key, s in values["inputs"].items()}
            return cls(
                config_from_dict(values["config"]),
                Task(**values["task"]),
                values["state_dict"],
                values["thresholds"],
                inputs,
            )
        except (KeyError, TypeError, AttributeError):
            raise older from None

    def model(self) -> HeadModel | ZeroShotHead:
        """The trained head, in eval mode."""
        model = build_head(self.config, {key: s.dim for key, s in self.inputs.items()}, self.task)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def check_stores(self, stores: dict[str, str] | None = None) -> None:
        """Refuse a store made another way than the one the head was trained on, naming what differs:
        the whole recipe is compared (views, backbone config, weights sha256, preprocessing), paths
        aside. `stores` gives other paths for some input keys (predict's new stores)."""
        for spec in self.config.inputs:
            path = (stores or {}).get(spec.key, spec.store)
            now, then = InputSchema.of_store(StoreReader(path)), self.inputs[spec.key]
            difference = then.recipe.difference(now.recipe)
            if difference is None and now.dim != then.dim:
                difference = f"the width is {now.dim} but the head was trained on {then.dim}"
            if difference:
                raise CheckpointError(
                    f"{path} was made another way than the store head input {spec.key!r} was trained on: "
                    f"{difference}. Retrain the head (dvc repro) or use the store it was trained on"
                )


def load_head(head_dir: str | Path) -> tuple[HeadModel | ZeroShotHead, Checkpoint]:
    """The trained model and its checkpoint."""
    checkpoint = Checkpoint.load(head_dir)
    try:
        return checkpoint.model(), checkpoint
    except (KeyError, TypeError, RuntimeError):
        raise CheckpointError(
            f"{Path(head_dir) / CHECKPOINT} was written by an older reelfeat: retrain it (dvc repro)"
        ) from None
