"""The ConvLSTM autoencoder: trained on generated moving-pattern videos through `train-encoder`, loaded
back through the production backbone loader, its rows probed linearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from extract.backbones import backbone_config
from extract.backbones.weights import WeightsError
from extract.core.config import ConfigError
from extract.stages.features import run_features
from extract.stages.manifest import write_csv
from extract.stages.train_encoder import train_encoder
from extract.store import StoreReader, StoreWriter

FRAMES, SIZE = 8, 32


def moving_square(direction: str, rng: np.random.Generator) -> np.ndarray:
    """FRAMES frames of a bright square of random colour crossing a dark, noisy background."""
    frames = rng.integers(0, 40, (FRAMES, SIZE, SIZE, 3)).astype(np.uint8)
    colour = rng.integers(150, 256, 3)
    across, fixed = rng.integers(0, 4), int(rng.integers(2, SIZE - 10))
    for t in range(FRAMES):
        moving = int(across + t * 3)
        y, x = (fixed, moving) if direction == "right" else (moving, fixed)
        frames[t, y : y + 8, x : x + 8] = colour
    return frames


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> dict:
    """60 videos, half moving right, half moving down, as a decoded frames store and a manifest."""
    root = tmp_path_factory.mktemp("encoder")
    rng = np.random.default_rng(0)
    view = {"view": {"type": "frames", "num_frames": FRAMES, "size": [SIZE, SIZE]}}
    attrs = {"kind": "frames", "config": json.dumps(view)}
    rows = []
    with StoreWriter(root / "frames", row_shape=(SIZE, SIZE, 3), dtype=np.uint8, attrs=attrs) as writer:
        for i in range(60):
            direction = "right" if i % 2 else "down"
            vid = f"v{i:02d}"
            writer.add(vid, moving_square(direction, rng), np.arange(FRAMES, dtype=np.float32), f"sha-{vid}")
            rows.append({"id": vid, "split": "train" if i < 40 else "val", "direction": direction})
    manifest = write_csv(root / "manifest.csv", ["id", "split", "direction"], rows)
    return {"root": root, "frames": str(root / "frames"), "manifest": str(manifest), "rows": rows}


def encoder_config(squares: dict, **extra):
    values = {"input": squares["frames"], "manifest": squares["manifest"], "size": [SIZE, SIZE]}
    values |= {"channels": [8, 16], "hidden": [16], "epochs": 12, "batch_size": 8, "lr": 3e-3, "strips": 2}
    return backbone_config("convlstm_ae", {**values, **extra}, "encoders")[1]


@pytest.fixture(scope="module")
def trained(squares) -> Path:
    return train_encoder(encoder_config(squares), squares["root"] / "encoder")


def test_the_reconstruction_loss_falls_and_pictures_are_written(squares, trained):
    history = json.loads((trained.parent / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    # better than the best constant picture, the mean training frame: it learned the moving squares
    frames = StoreReader(trained.parent.parent / "frames")
    videos = {r["id"]: frames.get(r["id"])[0].astype(np.float32) / 255 for r in squares["rows"]}
    mean_frame = np.mean([videos[r["id"]] for r in squares["rows"] if r["split"] == "train"], axis=0)
    constant = np.mean([(videos[r["id"]] - mean_frame) ** 2 for r in squares["rows"] if r["split"] == "val"])
    assert history[-1]["val_loss"] < 0.6 * constant
    strips = sorted((trained.parent / "strips").glob("*.png"))
    assert [p.name for p in strips] == ["v40.png", "v41.png"]  # validation videos
    picture = np.asarray(Image.open(strips[0]))
    assert picture.shape == (2 * SIZE, FRAMES * SIZE, 3)  # frames above, reconstructions below
    first = np.asarray(StoreReader(trained.parent.parent / "frames").get("v40")[0][0])
    assert np.abs(picture[:SIZE, :SIZE].astype(int) - first).max() <= 1  # the top row is the input
    assert picture[SIZE:].std() > 5  # the reconstruction is not a flat image


def test_rows_separate_two_motions_better_than_chance(squares, trained, tmp_path):
    values = {"input": squares["frames"], "manifest": squares["manifest"], "size": [SIZE, SIZE]}
    values |= {"channels": [8, 16], "hidden": [16], "epochs": 12, "batch_size": 8, "lr": 3e-3, "strips": 2}
    summary = run_features("convlstm_ae", {**values, "weights": str(trained)}, tmp_path / "rows", loader_workers=0)
    store = StoreReader(tmp_path / "rows")
    assert not summary.failures and store.row_shape == (16,)
    rows, times = store.get("v00")
    assert rows.shape == (FRAMES, 16) and list(times) == list(range(FRAMES))
    x = np.stack([store.get(r["id"])[0].mean(0) for r in squares["rows"]])
    y = np.array([r["direction"] == "right" for r in squares["rows"]])
    probe = LogisticRegression(max_iter=2000).fit(x[:40], y[:40])
    assert probe.score(x[40:], y[40:]) >= 0.8  # chance is 0.5
    recipe = json.loads(store.attrs["recipe"])
    assert recipe["weights"]["source"] == "path" and "manifest" not in recipe["backbone"]


def test_training_is_deterministic_and_leaves_the_process_as_it_was(squares, trained, tmp_path):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    again = train_encoder(encoder_config(squares), tmp_path / "again")
    # a notebook that trains keeps its own random state and algorithm setting
    assert torch.equal(torch.random.get_rng_state(), state) and not torch.are_deterministic_algorithms_enabled()
    first = torch.load(trained, weights_only=True)["state_dict"]
    second = torch.load(again, weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_checkpoint_of_another_architecture_is_refused_by_name(squares, trained, tmp_path):
    values = {"input": squares["frames"], "size": [SIZE, SIZE], "channels": [8, 16], "hidden": [32]}
    with pytest.raises(WeightsError, match=r"was trained as .* params say .* retrain it"):
        run_features("convlstm_ae", {**values, "weights": str(trained)}, tmp_path / "rows", loader_workers=0)
    torch.save({"w": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a checkpoint written by `python -m extract train-encoder`"):
        run_features(
            "convlstm_ae", {**values, "weights": str(tmp_path / "other.pt")}, tmp_path / "rows", loader_workers=0
        )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"size": [30, 32]}, "each a multiple of 4"),
        ({"kernel": 2}, "kernel: an odd size"),
        ({"hidden": []}, "hidden one or more"),
    ],
)
def test_bad_encoder_params_name_the_key(squares, extra, message):
    with pytest.raises(ConfigError, match=message):
        encoder_config(squares, **extra)
