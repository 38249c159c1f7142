"""Zero-shot heads: labels embedded by a tiny random CLIP through the production loader, scored by the
cosine with the videos' rows, through the same train / evaluate / predict path as trained heads."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_clip, write_input

from extract.core.config import ConfigError
from extract.stages.features import run_features
from heads.checkpoint import load_head
from heads.config import head_config
from heads.data import HeadData
from heads.evaluate import evaluate
from heads.predict import predict
from heads.train import predict_scores, train

LABELS = ["cat", "dog", "boat", "tree"]


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def captions_store(tmp_path: Path, rows: list[dict[str, str]], weights: Path) -> tuple[Path, Path]:
    """(manifest, clip_text store of its `text` column), made by the real backbone."""
    manifest = write_rows(tmp_path / "manifest.csv", rows)
    store = tmp_path / "features" / "clip_text"
    config = {"input": str(manifest), "weights": str(weights), "dtype": "float32", "precision": "float32"}
    run_features("clip_text", config, store, loader_workers=0)
    return manifest, store


def zero_shot(manifest: Path, store: Path, task: str, text_model: Path | None, **extra):
    values = {"kind": "zero_shot", "task": task, "target": "label", "manifest": str(manifest), "bootstrap": 0}
    values |= {"text_model": str(text_model) if text_model else None}
    return head_config("z", {**values, "inputs": [{"store": str(store), "pool": "mean"}], **extra})


def test_planted_labels_rank_first_and_scores_equal_clip_cosines(tmp_path, clip_folder):
    """Each caption is exactly one label's prompt, so its row is that label's text embedding: the label
    must rank first, and every score must equal sigmoid(scale * centred cosine) from transformers."""
    from transformers import AutoTokenizer, CLIPModel

    rows = [
        {"id": f"v{i}", "video": f"v{i}.mp4", "split": ["train", "val", "test"][i % 3], "label": label}
        | {"text": f"a video of {label}"}
        for i, label in enumerate(LABELS * 3)
    ]
    manifest, store = captions_store(tmp_path, rows, clip_folder)
    config = zero_shot(manifest, store, "multi_label", clip_folder)
    train(config, tmp_path / "head")
    metrics = evaluate(tmp_path / "head")
    assert metrics["test"]["hit@1"] == 1.0 and metrics["val"]["hit@1"] == 1.0
    assert json.loads((tmp_path / "head" / "history.json").read_text()) == []

    model, checkpoint = load_head(tmp_path / "head")
    assert checkpoint.state_dict["labels"].shape == (len(LABELS), 16)
    data = HeadData.load(config)
    scores = predict_scores(model, data, np.arange(len(data.ids)))

    clip = CLIPModel.from_pretrained(clip_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(clip_folder)

    def embedded(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt")
        with torch.inference_mode():
            return torch.nn.functional.normalize(clip.get_text_features(**ids).pooler_output, dim=-1)

    classes = sorted(LABELS)  # the task's output order
    cosines = embedded([row["text"] for row in rows]) @ embedded([f"a video of {c}" for c in classes]).T
    logits = clip.logit_scale.exp().item() * (cosines - cosines.mean(1, keepdim=True))
    np.testing.assert_allclose(scores, torch.sigmoid(logits).numpy(), rtol=1e-4, atol=1e-5)
    planted = [classes.index(row["label"]) for row in rows]
    assert (scores.argmax(1) == planted).all()


def test_clap_text_rows_are_scored_with_labels_from_the_same_clap_at_its_audio_scale(tmp_path, clap_folder):
    """Audio-text zero-shot: the labels come from CLAP's own text tower (through `clip_text`, which loads
    any such model), and the logit scale is CLAP's audio one."""
    from transformers import ClapModel

    rows = [
        {"id": f"v{i}", "video": f"v{i}.mp4", "split": ["train", "val", "test"][i % 3], "label": label}
        | {"text": f"a video of {label}"}
        for i, label in enumerate(LABELS * 3)
    ]
    manifest = write_rows(tmp_path / "manifest.csv", rows)
    store = tmp_path / "features" / "clap_text"
    config = {"input": str(manifest), "weights": str(clap_folder), "dtype": "float32", "precision": "float32"}
    run_features("clap_text", config, store, loader_workers=0)
    train(zero_shot(manifest, store, "multi_class", clap_folder), tmp_path / "head")
    assert evaluate(tmp_path / "head")["test"]["accuracy"] == 1.0
    _, checkpoint = load_head(tmp_path / "head")
    scale = ClapModel.from_pretrained(clap_folder).logit_scale_a.exp().item()
    assert float(checkpoint.state_dict["scale"]) == pytest.approx(scale, rel=1e-6)


@pytest.mark.parametrize("family", ["videoprism", "pe"])
def test_video_text_models_score_labels_from_their_own_text_tower_at_their_own_scale(tmp_path, request, family):
    """VideoPrism and PE video: the labels come from the text tower the registry names for the store's
    model, at the model's logit scale and bias (VideoPrism has none: plain cosines), and predict works."""
    weights = request.getfixturevalue("videoprism_folder" if family == "videoprism" else "pe_av_folder")
    tower = f"{family}_text"
    rows = [
        {"id": f"v{i}", "video": f"v{i}.mp4", "split": ["train", "val", "test"][i % 3], "label": label}
        | {"text": f"a video of {label}"}
        for i, label in enumerate(LABELS * 3)
    ]
    manifest = write_rows(tmp_path / "manifest.csv", rows)
    store = tmp_path / "features" / tower
    config = {"input": str(manifest), "weights": str(weights), "dtype": "float32", "precision": "float32"}
    run_features(tower, config, store, loader_workers=0)
    train(zero_shot(manifest, store, "multi_class", weights), tmp_path / "head")
    assert evaluate(tmp_path / "head")["test"]["accuracy"] == 1.0
    _, checkpoint = load_head(tmp_path / "head")
    scale, bias = (1.0, 0.0) if family == "videoprism" else (10.0, -2.0)
    assert float(checkpoint.state_dict["scale"]) == scale and float(checkpoint.state_dict["bias"]) == bias

    params = {"backbones": {tower: {"input": "x", "weights": str(weights)}}}
    new = write_rows(tmp_path / "new.csv", [{"video": "n.mp4", "text": "a video of boat"}])
    out = io.StringIO()
    predict(tmp_path / "head", params, [], str(new), out)
    scores = json.loads(out.getvalue())["scores"]
    assert max(scores, key=scores.get) == "boat"


def test_videoprism_clip_rows_take_labels_from_its_text_tower_and_frame_rows_are_refused(tmp_path, videoprism_folder):
    from transformers import AutoTokenizer, VideoPrismClipModel

    rng = np.random.default_rng(0)
    clips = {f"v{i}": rng.integers(0, 255, (1, 4, 40, 40, 3), dtype=np.uint8) for i in range(3)}
    view = {"view": {"type": "clips", "clip_len": 4, "fps": None}}
    times = {vid: np.array([0.5], np.float32) for vid in clips}
    source = write_input(tmp_path / "clips", "clips", clips, times, view)
    splits = ["train", "val", "test"]
    rows = [{"id": vid, "video": f"{vid}.mp4", "split": splits[i], "label": LABELS[i]} for i, vid in enumerate(clips)]
    manifest = write_rows(tmp_path / "manifest.csv", rows)
    config = {"input": str(source), "weights": str(videoprism_folder), "dtype": "float32", "precision": "float32"}
    for rows_kind in ("frame", "shared"):
        store = tmp_path / "features" / rows_kind
        run_features("videoprism", {**config, "rows": rows_kind}, store, loader_workers=0)
    with pytest.raises(ConfigError, match="holds videoprism rows: frame, which are not in the space .* rows: shared"):
        train(zero_shot(manifest, tmp_path / "features" / "frame", "multi_class", videoprism_folder), tmp_path / "h")
    train(zero_shot(manifest, tmp_path / "features" / "shared", "multi_class", videoprism_folder), tmp_path / "h")
    _, checkpoint = load_head(tmp_path / "h")
    model = VideoPrismClipModel.from_pretrained(videoprism_folder).eval()
    ids = AutoTokenizer.from_pretrained(videoprism_folder)(
        [f"a video of {label}" for label in sorted(LABELS[:3])],
        padding="max_length",
        max_length=16,
        return_tensors="pt",
    )
    with torch.inference_mode():
        text = model.get_text_features(**ids).pooler_output
    np.testing.assert_allclose(checkpoint.state_dict["labels"].numpy(), text.numpy(), rtol=1e-4, atol=1e-5)


def test_binary_weighs_the_label_against_the_negative_prompt_and_predict_uses_it(tmp_path, clip_folder):
    rows = [
        {"id": f"v{i}", "video": f"v{i}.mp4", "split": ["train", "val", "test"][i % 3], "label": str(i % 2)}
        | {"text": "a video of smoking" if i % 2 else "a video"}
        for i in range(12)
    ]
    manifest, store = captions_store(tmp_path, rows, clip_folder)
    config = zero_shot(manifest, store, "binary", clip_folder, label_text={"label": "smoking"})
    train(config, tmp_path / "head")
    model, _ = load_head(tmp_path / "head")
    data = HeadData.load(config)
    scores = predict_scores(model, data, np.arange(len(data.ids)))[:, 0]
    positive = np.array([row["label"] == "1" for row in rows])
    assert (scores[positive] > 0.5).all() and (scores[~positive] < 0.5).all()
    assert evaluate(tmp_path / "head")["test"]["roc_auc"] == 1.0

    # predict remakes the caption rows from the checkpoint's recipe, with params.yaml's local weights
    params = {"backbones": {"clip_text": {"input": "x", "weights": str(clip_folder)}}}
    new = write_rows(tmp_path / "new.csv", [{"video": "n.mp4", "text": "a video of smoking"}])
    out = io.StringIO()
    predict(tmp_path / "head", params, [], str(new), out)
    line = json.loads(out.getvalue())
    assert line["labels"] == ["label"] and line["scores"]["label"] == pytest.approx(scores[positive][0], abs=1e-5)


def test_labels_embedded_by_another_model_are_refused_naming_the_input(tmp_path, clip_folder):
    rows = [{"id": f"v{i}", "video": f"v{i}.mp4", "split": "train", "label": "cat", "text": "x"} for i in range(3)]
    manifest, store = captions_store(tmp_path, rows, clip_folder)
    other = save_tiny_clip(tmp_path / "other-clip")  # the same architecture, other random weights
    config = zero_shot(manifest, store, "multi_class", other)
    with pytest.raises(ConfigError, match=r"input 'clip_text' was made with weights .* set text_model"):
        train(config, tmp_path / "head")
    # a store made from a local folder does not record where: the head must be told
    with pytest.raises(ConfigError, match=r"input 'clip_text' was made with weights from a local folder"):
        train(zero_shot(manifest, store, "multi_class", None), tmp_path / "head")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"task": "regression"}, "a zero_shot head scores labels"),
        ({"prompt": "a video"}, "has no {label}"),
        ({"inputs": [{"store": "s", "pool": "lstm"}]}, r"inputs\[0\].pool: a zero_shot head compares mean-pooled"),
        ({"kind": "zeroshot"}, "kind: 'zeroshot' is not one of"),
    ],
)
def test_bad_zero_shot_params_name_the_key(extra, message):
    values = {"kind": "zero_shot", "task": "multi_label", "target": "t", "inputs": [{"store": "s"}], **extra}
    with pytest.raises(ConfigError, match=message):
        head_config("z", values)
