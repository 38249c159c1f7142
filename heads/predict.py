"""Use a trained head on new videos: make its inputs the way its checkpoint says, then write JSON lines.

The checkpoint holds the recipe of every store the head read (decode view, backbone config,
weights, preprocessing; see `extract.recipe`), so the videos go through the same stages with
those settings, whatever `params.yaml` says now, into a temporary folder; the stores made are
then checked against the recipes like any other. Each video gives one line, `{"id", "scores",
"labels"}`, or `{"id", "error"}`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from extract.backbones.weights import is_local_path
from extract.decode import run_decode, views_from_params
from extract.errors import UserError
from extract.features import run_features
from extract.manifest import video_rows, write_csv
from extract.recipe import Recipe
from extract.settings import Settings
from extract.store import StoreReader
from heads.checkpoint import load_head
from heads.data import HeadData
from heads.train import predict_scores


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


def predict(
    head_dir: str | Path,
    params: dict[str, Any],
    videos: list[str],
    manifest: str | None,
    out: TextIO,
    settings: Settings | None = None,
) -> int:
    """Write one JSON line per video to `out`; returns how many videos failed. `settings` default to
    the environment's."""
    settings = settings or Settings.from_environment()
    model, checkpoint = load_head(head_dir)
    config, task = model.config, model.task
    rows = video_rows(videos, manifest, Path.cwd())
    recipes = {spec.key: checkpoint.inputs[spec.key].recipe for spec in config.inputs}
    for key, recipe in recipes.items():
        for column in recipe.columns_read():
            if not manifest or any(column not in row for row in rows):
                raise UserError(
                    f"head input {key!r} reads the manifest column {column!r} (captions): give the videos in a "
                    f"table with a {column!r} column, --manifest M, instead of bare files"
                )
    with tempfile.TemporaryDirectory(prefix="reelfeat-predict-") as tmp:
        maker = InputMaker(rows, Path(tmp), params.get("backbones") or {}, settings)
        for recipe in recipes.values():
            maker.plan_views(recipe)
        maker.decode()
        by_key = {key: maker.make(recipe) for key, recipe in recipes.items()}
        checkpoint.check_stores(by_key)
        local = dataclasses.replace(
            config, inputs=tuple(dataclasses.replace(s, store=by_key[s.key], name=s.key) for s in config.inputs)
        )
        data = HeadData.load(local, rows)
        scores = predict_scores(model, data, np.arange(len(data.rows)))
        lines = {vid: label_line(task, checkpoint.thresholds, vid, s) for vid, s in zip(data.ids, scores, strict=True)}
        failures = {}
        for path in by_key.values():
            failures.update(StoreReader(path).failures)
    failed = 0
    for row in rows:
        line = lines.get(row["id"])
        if line is None:
            line = {"id": row["id"], "error": failures.get(row["id"], "no features for this video")}
            failed += 1
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return failed


def label_line(task, thresholds: dict, vid: str, scores: np.ndarray) -> dict:
    if task.kind == "binary":
        p = float(scores[0])
        return {
            "id": vid,
            "scores": {task.classes[0]: round(p, 6)},
            "labels": [task.classes[0]] if p >= thresholds.get("global", 0.5) else [],
        }
    named = {name: round(float(s), 6) for name, s in zip(task.classes, scores, strict=True)}
    if task.kind == "multi_label":
        cuts = thresholds.get("per_class", [0.5] * len(task.classes))
        labels = [name for name, s, t in zip(task.classes, scores, cuts, strict=True) if s >= t]
        labels.sort(key=lambda name: -named[name])
    elif task.kind in ("multi_class", "quantile"):
        labels = [task.classes[int(np.argmax(scores))]]
    else:
        labels = []
    return {"id": vid, "scores": named, "labels": labels}
