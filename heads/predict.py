"""Use a trained head on new videos: extract what its inputs need, then write JSON lines.

The videos go through the same stages as the pipeline (decode views, backbones, with the same
params and weights) into a temporary folder; the head's checkpoint refuses stores made with other
weights. Each video gives one line, `{"id", "scores", "labels"}`, or `{"id", "error"}`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from extract.decode import run_decode, views_from_params
from extract.features import run_features
from extract.manifest import PrepareConfig, default_id, file_sha256, prepare
from extract.store import StoreReader
from extract.views import ConfigError
from heads.data import HeadData
from heads.evaluate import check_stores, load_head
from heads.train import predict_scores


def rows_for(videos: list[str], manifest: str | None, root: Path) -> list[dict[str, str]]:
    """Manifest rows for the videos to predict: a table (checked as `prepare` checks it) or bare files."""
    if manifest:
        return prepare(PrepareConfig(manifest=manifest), root=root).rows
    rows = []
    for video in videos:
        path = Path(video).resolve()
        rows.append(
            {
                "id": default_id(str(path), path.parent),
                "video": str(path),
                "text": "",
                "sha256": file_sha256(path) if path.is_file() else "",
            }
        )
    return rows


def backbone_for(store: str, backbones: dict[str, dict]) -> str:
    """The backbone whose `extract@` stage writes `store` (data/features/<key>.h5)."""
    key = Path(store).stem
    if Path(store).parent != Path("data/features") or key not in backbones:
        raise ConfigError(f"{store} is not written by any backbone in params.yaml; predict cannot make it")
    return key


def extract_for(head_stores: list[str], params: dict[str, Any], rows: list[dict[str, str]], work: Path) -> dict:
    """Run decode and every backbone the stores need on `rows` in `work`; returns store -> new path."""
    backbones = params.get("backbones") or {}
    views = views_from_params(params.get("decode") or {})
    manifest = work / "manifest.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["id", "video", "split", "sha256", "text"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, "split": "test", "text": row.get("text", "")} for row in rows)
    run_decode(rows, views, work / "decoded", workers=1)
    moved = {"data/prepared/manifest.csv": str(manifest)}
    moved.update({f"data/decoded/{name}.h5": str(work / "decoded" / f"{name}.h5") for name in views})
    made: dict[str, str] = {}

    def make(store: str) -> str:
        if store in made:
            return made[store]
        key = backbone_for(store, backbones)
        values = dict(backbones[key])
        source = values["input"]
        values["input"] = make(source) if source.startswith("data/features/") else moved[source]
        out = work / "features" / f"{key}.h5"
        run_features(key, values, out)
        made[store] = str(out)
        return made[store]

    for store in head_stores:
        make(store)
    return made


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


def predict(head_dir: str | Path, params: dict[str, Any], videos: list[str], manifest: str | None, out: TextIO) -> int:
    """Write one JSON line per video to `out`; returns how many videos failed."""
    model, checkpoint = load_head(head_dir)
    config, task = model.config, model.task
    rows = rows_for(videos, manifest, Path.cwd())
    with tempfile.TemporaryDirectory(prefix="reelfeat-predict-") as tmp:
        stores = extract_for([spec.store for spec in config.inputs], params, rows, Path(tmp))
        by_key = {spec.key: stores[spec.store] for spec in config.inputs}
        check_stores(config, checkpoint, by_key)
        local = dataclasses.replace(
            config, inputs=tuple(dataclasses.replace(s, store=by_key[s.key]) for s in config.inputs)
        )
        data = HeadData.load(local, rows)
        scores = predict_scores(model, data, np.arange(len(data.rows)))
        lines = {
            vid: label_line(task, checkpoint["thresholds"], vid, s) for vid, s in zip(data.ids, scores, strict=True)
        }
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
