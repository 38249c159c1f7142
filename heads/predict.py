"""Use a trained head on new videos: make its inputs the way its checkpoint says, then write JSON lines.

The checkpoint holds the recipe of every store the head read (decode view, backbone config,
weights, preprocessing; see `extract.core.recipe`), so the videos go through the same stages with
those settings, whatever `params.yaml` says now, into a temporary folder; the stores made are
then checked against the recipes like any other. Each video gives one line, `{"id", "scores",
"labels"}`, or `{"id", "error"}`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from extract.core.errors import UserError
from extract.core.settings import Settings
from extract.ondemand.remake import InputMaker
from extract.stages.manifest import video_rows
from extract.store import StoreReader
from heads.checkpoint import load_head
from heads.data import HeadData
from heads.kinds import Task
from heads.train import predict_scores


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


def label_line(task: Task, thresholds: dict, vid: str, scores: np.ndarray) -> dict:
    """A video's JSON line: its score per output, and the labels they give (none for regression)."""
    named = {name: round(float(s), 6) for name, s in zip(task.classes, scores, strict=True)}
    return {"id": vid, "scores": named, "labels": task.kind.labels(task, thresholds, scores)}
