"""Heads over multi-view clip stores (`views: each`): a view per video while training, scores averaged
over every view at val, test and predict, as the papers' multi-view evaluations read them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CLASSES, DIM, config_for, write_store

from extract.core.errors import UserError
from heads.checkpoint import load_head
from heads.data import HeadData
from heads.evaluate import evaluate
from heads.train import predict_scores, train
from reelfeat.report.review import attention_weights

SEGMENTS, CROPS, ROWS_PER_VIEW = 2, 3, 2
VIEW = {"type": "clips", "num_clips": SEGMENTS, "clip_len": 4, "crops": CROPS}


@pytest.fixture(scope="module")
def multiview(tmp_path_factory, synthetic) -> dict:
    """Each video's rows: 6 views (2 segments x 3 crops) of 2 rows; the class shows in every view,
    with noise, and each view is offset by its own number so views are told apart."""
    root = tmp_path_factory.mktemp("multiview")
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (CLASSES, DIM)) * 2
    names = ["red", "green", "blue"]
    label = {row["id"]: names.index(row["action"]) for row in synthetic["rows"]}
    views = SEGMENTS * CROPS
    rows = {
        vid: (
            centres[label[vid]]
            + rng.normal(0, 1.5, (views * ROWS_PER_VIEW, DIM))
            + np.repeat(np.arange(views), ROWS_PER_VIEW)[:, None] * 0.1
        ).astype(np.float32)
        for vid in label
    }
    stores = {
        "clips": write_store(root / "clips", rows, view=VIEW),
        "clips_copy": write_store(root / "clips_copy", rows, backbone="copy", view=VIEW),
        "uneven": write_store(root / "uneven", {vid: r[:-1] for vid, r in rows.items()}, view=VIEW),
        "four": write_store(root / "four", rows, view={**VIEW, "crops": 1, "num_clips": 4}),
    }
    return {"stores": stores, "rows": rows}


def head(synthetic, multiview, tmp_path, inputs, **extra):
    specs = [{"store": multiview["stores"][store], "pool": pool, "name": store} for store, pool in inputs]
    return config_for(synthetic, tmp_path, "multi_class", "action", specs, views="each", **extra)


def test_each_view_is_read_apart_and_a_training_batch_takes_one_view_per_video_in_every_input(
    synthetic, multiview, tmp_path
):
    config = head(synthetic, multiview, tmp_path, [("clips", "attention"), ("clips_copy", "mean")])
    data = HeadData.load(config)
    assert data.views == SEGMENTS * CROPS
    videos = np.arange(5)
    for view in (0, 4):
        batch = data.batch(videos, view=view)
        rows, mask = batch["clips"]
        for i, v in enumerate(videos):
            expected = multiview["rows"][data.ids[v]][view * ROWS_PER_VIEW : (view + 1) * ROWS_PER_VIEW]
            np.testing.assert_array_equal(rows[i][mask[i]].numpy(), expected)
            np.testing.assert_allclose(batch["clips_copy"][i].numpy(), expected.mean(0), rtol=1e-6)
    # training: a random view per video, the same one in both inputs; over many batches, every view
    rng, seen = np.random.default_rng(0), set()
    for _ in range(20):
        batch = data.batch(videos, rng)
        rows, mask = batch["clips"]
        for i, v in enumerate(videos):
            all_rows = multiview["rows"][data.ids[v]]
            view = next(k for k in range(data.views) if np.array_equal(all_rows[k * 2 : k * 2 + 2], rows[i][mask[i]]))
            np.testing.assert_allclose(batch["clips_copy"][i].numpy(), all_rows[view * 2 : view * 2 + 2].mean(0))
            seen.add(view)
    assert seen == set(range(SEGMENTS * CROPS))


def test_scores_are_the_mean_over_views_and_the_head_learns(synthetic, multiview, tmp_path):
    config = head(synthetic, multiview, tmp_path, [("clips", "attention")], epochs=15)
    train(config, tmp_path / "head")
    model, _ = load_head(tmp_path / "head")
    data = HeadData.load(config)
    videos = data.split("test")
    with torch.inference_mode():
        model.eval()
        per_view = [model.task.scores(model(data.batch(videos, view=v))[0].numpy()) for v in range(data.views)]
    np.testing.assert_allclose(predict_scores(model, data, videos), np.mean(per_view, axis=0), rtol=1e-5)
    assert evaluate(tmp_path / "head")["test"]["accuracy"] >= 0.9
    # the report draws the attention over the first view's rows, at their own times
    times, weights = attention_weights(model, data, 0)["clips"]
    assert times.tolist() == [0.0, 1.0] and abs(weights.sum() - 1) < 1e-5
    # the same store read whole (views: pooled) is read as one sequence per video
    assert HeadData.load(config.with_values({"views": "pooled"})).views == 1


def test_views_that_cannot_be_read_apart_name_the_store_and_the_fix(synthetic, multiview, tmp_path):
    uneven = head(synthetic, multiview, tmp_path, [("uneven", "mean")])
    with pytest.raises(UserError, match=r"uneven: the rows of 'v000' \(11\) do not split into its 6 views"):
        HeadData.load(uneven)
    mixed = head(synthetic, multiview, tmp_path, [("clips", "mean"), ("four", "mean")])
    with pytest.raises(UserError, match="views: each needs one number of views .* clips: 6, four: 4"):
        HeadData.load(mixed)
