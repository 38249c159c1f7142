"""Stores for new videos made from recipes: what `predict` and `neighbours --video` need.

A store's recipe (see `extract.core.recipe`) says how its rows were made: the decode view, the
backbone's config, its weights and preprocessing. `InputMaker` makes the same for a few new videos
in a work folder, whatever `params.yaml` says now: one decode pass for every view the recipes
need, then each backbone; the stores made are then checked against the recipes like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from extract.backbones.weights import is_local_path
from extract.core.errors import UserError
from extract.core.recipe import Recipe
from extract.core.settings import Settings
from extract.stages.decode import run_decode, views_from_params
from extract.stages.features import run_features
from extract.stages.manifest import write_csv


class InputMaker:
    """Makes stores in `work` for new videos from recipes: one decode for every view, then backbones."""

    def __init__(self, rows: list[dict[str, str]], work: Path, backbones: dict[str, dict], settings: Settings) -> None:
        self.rows, self.work, self.backbones, self.settings = rows, work, backbones, settings
        self.views: dict[str, dict] = {}  # view name -> its params, one per distinct view recipe
        self.made: dict[str, str] = {}  # recipe JSON -> store path

    def plan_views(self, recipe: Recipe) -> None:
        """Collect the decode views a recipe needs, so one decode pass makes them all."""
        if recipe.view is not None and recipe.key not in self.made:
            name = f"view{len(self.views)}"
            self.views[name] = dict(recipe.view)
            self.made[recipe.key] = str(self.work / "decoded" / name)
        for inner in (recipe.transcripts, recipe.input):
            if inner is not None:
                self.plan_views(inner)

    def decode(self) -> None:
        if self.views:
            run_decode(
                self.rows, views_from_params({"views": self.views}), self.work / "decoded", settings=self.settings
            )

    def make(self, recipe: Recipe) -> str:
        """The path of a store made by `recipe` for the rows (decoded views must be made first)."""
        if recipe.key in self.made:
            return self.made[recipe.key]
        if recipe.column is not None:
            path = write_csv(self.work / "manifest.csv", list(self.rows[0]), self.rows)
        elif recipe.transcripts is not None:
            path = self.make(recipe.transcripts)
        elif recipe.backbone is not None and recipe.input is not None and recipe.weights is not None:
            model = recipe.backbone["model"]
            values = {
                **recipe.backbone,
                "input": self.make(recipe.input),
                "weights": self.weights(model, recipe.weights),
            }
            path = self.work / "features" / f"{len(self.made)}_{model}"
            run_features(model, values, path, settings=self.settings)
        else:
            raise UserError(
                f"an input of this head was not made by reelfeat ({recipe.key[:80]}): "
                "predict cannot make it for new videos"
            )
        self.made[recipe.key] = str(path)
        return self.made[recipe.key]

    def weights(self, model: str, weights: Mapping[str, Any]) -> str:
        """The library name the store's weights came from; for a local file, params.yaml's path for that model."""
        if weights.get("source") != "path":
            return weights["name"]
        local = [
            str(values["weights"])
            for key, values in self.backbones.items()
            if isinstance(values, dict)
            and values.get("model", key) == model
            and values.get("weights")
            and is_local_path(str(values["weights"]), repo_ids=True)
        ]
        if not local:
            raise UserError(
                f"the head's {model} input was made with local weights (sha256 {weights['sha256'][:12]}...): "
                f"set `weights` of a {model} backbone in params.yaml to that file"
            )
        return local[0]  # the stores made are checked against the recipe, weights sha256 included
