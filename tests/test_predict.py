"""Heads on new videos: predict makes inputs the way the checkpoint says, refuses stores made another
way, keeps bare files with the same name apart, asks for captions it needs, and never writes NaN for
a video with no rows in an input (a silent clip through the success-prediction preset)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from conftest import make_video, save_torchvision

from extract.__main__ import main as extract_main
from extract.core.errors import UserError
from heads.__main__ import main as heads_main
from heads.checkpoint import CheckpointError, load_head
from heads.config import head_config
from heads.data import HeadData
from heads.predict import predict
from heads.train import predict_scores

SILENT = {"v3", "v7"}  # clips without an audio stream: zero Whisper rows


@pytest.fixture(scope="module")
def project(tmp_path_factory, weights_dir, bert_folder, whisper_file) -> Path:
    """A real project run through the CLIs: 10 clips, frames and audio, ResNet18, BERT on captions,
    Whisper rows, and three heads (visual, captioned, the success-prediction Transformers)."""
    root = tmp_path_factory.mktemp("project")
    rows = ["video,text,kind,views,split"]
    for i in range(10):
        make_video(root / "clips" / f"v{i}.mp4", seconds=1, size="64x48", audio=f"v{i}" not in SILENT, rate=10 + i)
        words = "cold beer by the sea" if i % 2 else "yoga by the river"
        rows.append(f"clips/v{i}.mp4,{words},{i % 2},{100 * (i + 1)},{['train', 'train', 'val', 'test'][i % 4]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    success_inputs = [
        {"store": "data/features/whisper", "pool": "transformer", "max_len": 16, "hidden": 16, "heads": 2},
        {"store": "data/features/resnet18", "pool": "transformer", "max_len": 4, "hidden": 16, "heads": 2},
    ]
    params = {
        "prepare": {"manifest": "manifest.csv", "columns": {"kind": "binary", "views": "number"}},
        "decode": {
            "views": {
                "frames": {"type": "frames", "num_frames": 2, "size": [32, 32]},
                "audio": {"type": "audio", "sample_rate": 16000},
            }
        },
        "backbones": {
            "resnet18": {"input": "data/decoded/frames", "weights": str(save_torchvision(weights_dir, "resnet18"))},
            "bert": {"input": "data/prepared/manifest.csv", "weights": str(bert_folder), "max_tokens": 8},
            "whisper": {"input": "data/decoded/audio", "weights": str(whisper_file), "transcribe": False},
        },
        "heads": {
            "visual": {
                "task": "binary",
                "target": "kind",
                "epochs": 3,
                "bootstrap": 0,
                "inputs": [{"store": "data/features/resnet18"}],
            },
            "captioned": {
                "task": "binary",
                "target": "kind",
                "epochs": 3,
                "bootstrap": 0,
                "inputs": [{"store": "data/features/bert"}, {"store": "data/features/resnet18"}],
            },
            "success": {"task": "regression", "target": "views", "epochs": 3, "bootstrap": 0, "inputs": success_inputs},
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert extract_main(["prepare"]) == 0 and extract_main(["decode"]) == 0
        for key in params["backbones"]:
            assert extract_main(["features", key, "--out", f"data/features/{key}"]) == 0
        for head in params["heads"]:
            assert heads_main(["train", head]) == 0 and heads_main(["evaluate", head]) == 0
    finally:
        os.chdir(cwd)
    return root


def pipeline_score(root: Path, head: str, vid: str) -> float:
    model, _ = load_head(root / "data/heads" / head)
    config = model.config
    absolute = [{**vars(spec), "store": str(root / spec.store)} for spec in config.inputs]
    values = {**vars(config), "inputs": absolute, "manifest": str(root / config.manifest)}
    config = head_config(head, values)
    data = HeadData.load(config)
    return float(predict_scores(model, data, np.array([data.ids.index(vid)]))[0, 0])


def run_predict(root: Path, head: str, videos: list[str], manifest: str | None = None, params=None) -> list[dict]:
    out = root / "predicted.jsonl"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        params = params if params is not None else yaml.safe_load((root / "params.yaml").read_text())
        with open(out, "w") as handle:
            predict(root / "data/heads" / head, params, videos, manifest, handle)
    finally:
        os.chdir(cwd)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_predict_makes_inputs_from_the_checkpoint_not_from_todays_params(project):
    changed = yaml.safe_load((project / "params.yaml").read_text())
    changed["decode"]["views"]["frames"]["num_frames"] = 5  # what params say now is not what the head saw
    changed["decode"]["views"]["frames"]["size"] = [48, 48]
    (line,) = run_predict(project, "visual", ["clips/v1.mp4"], params=changed)
    assert line["id"] == "clips/v1"
    assert line["scores"]["kind"] == pytest.approx(pipeline_score(project, "visual", "clips/v1"), abs=1e-4)


def test_predict_refuses_features_made_with_other_weights(project, tmp_path):
    other = tmp_path / "other_resnet18.pth"
    torch.manual_seed(7)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["backbones"]["resnet18"]["weights"] = str(other)  # a local file whose sha256 is not the head's
    with pytest.raises(CheckpointError, match=r"made another way than the store head input 'resnet18' .*: weights is"):
        run_predict(project, "visual", ["clips/v1.mp4"], params=params)


def test_bare_files_with_the_same_name_in_two_folders_stay_two_videos(project):
    for folder, seconds in (("a", 1.0), ("b", 2.0)):
        make_video(project / folder / "clip.mp4", seconds=seconds, size="64x48", rate=7 if folder == "a" else 13)
    lines = run_predict(project, "visual", ["a/clip.mp4", "b/clip.mp4"])
    assert [line["id"] for line in lines] == ["a/clip", "b/clip"]
    assert lines[0]["scores"] != lines[1]["scores"]


def test_a_head_that_reads_captions_asks_for_them_instead_of_embedding_empty_text(project):
    with pytest.raises(UserError, match="reads the manifest column 'text' .* --manifest M"):
        run_predict(project, "captioned", ["clips/v1.mp4"])
    (project / "one.csv").write_text("video,text\nclips/v1.mp4,cold beer by the sea\n")
    (line,) = run_predict(project, "captioned", [], manifest=str(project / "one.csv"))
    assert line["scores"]["kind"] == pytest.approx(pipeline_score(project, "captioned", "clips/v1"), abs=1e-4)


def test_a_silent_clip_reaches_the_success_head_flagged_missing_and_never_nan(project):
    model, checkpoint = load_head(project / "data/heads/success")
    history = json.loads((project / "data/heads/success/history.json").read_text())
    assert all(np.isfinite([e["train_loss"], e.get("val_loss", 0.0)]).all() for e in history)
    config = model.config
    absolute = [{**vars(spec), "store": str(project / spec.store)} for spec in config.inputs]
    config = head_config("success", {**vars(config), "inputs": absolute, "manifest": str(project / config.manifest)})
    data = HeadData.load(config)
    silent = [data.ids.index(f"clips/{vid}") for vid in sorted(SILENT)]
    batch = data.batch(np.array(silent + [0]))
    assert batch["missing"].tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]  # whisper, resnet18
    scores = predict_scores(model, data, np.arange(len(data.ids)))
    assert np.isfinite(scores).all()
    lines = run_predict(project, "success", ["clips/v3.mp4", "clips/v0.mp4"])
    assert all(np.isfinite(line["scores"]["views"]) for line in lines)
    metrics = json.loads((project / "data/heads/success/metrics.json").read_text())
    assert np.isfinite(metrics["test"]["mse"])


def test_predict_out_replaces_the_file_only_when_it_succeeds(project):
    out = project / "kept.jsonl"
    out.write_text("earlier results\n")
    cwd = os.getcwd()
    os.chdir(project)
    try:
        # captions needed, none given: the command stops, and the earlier file is untouched
        assert heads_main(["predict", "--head", "captioned", "--out", str(out), "clips/v1.mp4"]) == 1
        assert out.read_text() == "earlier results\n"
        assert heads_main(["predict", "--head", "visual", "--out", str(out), "clips/v1.mp4"]) == 0
    finally:
        os.chdir(cwd)
    assert json.loads(out.read_text())["id"] == "clips/v1"
    assert not [p for p in project.iterdir() if p.name.startswith(".kept.jsonl")]  # no temp file left
