"""Sweeps: every configuration of a head trained in one pass over shared batches, the best kept on val,
each configuration training exactly as it would alone; early stopping; the sweep table and metrics."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import config_for, resolve

from extract.core.config import ConfigError
from extract.core.errors import UserError
from heads.checkpoint import Checkpoint
from heads.config import head_config
from heads.evaluate import evaluate
from heads.train import SWEEP, train
from reelfeat.report.page import sweep_leaderboard
from reelfeat.report.review import review_head

# rows read per batch (random rows of the sequence input) and dropout both draw random numbers
INPUTS = [{"store": "pooled", "pool": "mean"}, {"store": "seq", "pool": "attention", "hidden": 8, "max_len": 6}]


def same_weights(a: Checkpoint, b: Checkpoint) -> bool:
    return a.state_dict.keys() == b.state_dict.keys() and all(
        torch.equal(a.state_dict[key], b.state_dict[key]) for key in a.state_dict
    )


def test_a_sweep_keeps_the_best_on_val_and_it_is_what_that_configuration_trains_alone(synthetic, tmp_path):
    sweep = {"lr": [1e-4, 3e-3], "weight_decay": [0.0, 1e-2], "dropout": [0.0, 0.3]}
    inputs = resolve(INPUTS, synthetic["stores"])
    config = config_for(synthetic, tmp_path, "binary", "binary", inputs, epochs=6, sweep=sweep)
    train(config, tmp_path / "swept")

    rows = json.loads((tmp_path / "swept" / SWEEP).read_text())["rows"]
    assert len(rows) == 8 and sum(row["best"] for row in rows) == 1
    assert [(row["lr"], row["weight_decay"], row["dropout"]) for row in rows][:3] == [
        (1e-4, 0.0, 0.0),
        (1e-4, 0.0, 0.3),
        (1e-4, 1e-2, 0.0),
    ]
    best = next(row for row in rows if row["best"])
    assert best["val_roc_auc"] == max(row["val_roc_auc"] for row in rows)
    assert all(row["epochs_run"] == 6 and row["best_epoch"] == 6 for row in rows)

    alone = config_for(
        synthetic,
        tmp_path,
        "binary",
        "binary",
        inputs,
        epochs=6,
        **{k: best[k] for k in ("lr", "weight_decay", "dropout")},
    )
    train(alone, tmp_path / "alone")
    swept, single = Checkpoint.load(tmp_path / "swept"), Checkpoint.load(tmp_path / "alone")
    assert same_weights(swept, single)
    assert swept.thresholds == single.thresholds and swept.config == single.config
    assert (tmp_path / "swept" / "history.json").read_text() == (tmp_path / "alone" / "history.json").read_text()

    metrics = evaluate(tmp_path / "swept")
    assert metrics["best"]["lr"] == best["lr"] and metrics["best"]["val_roc_auc"] == best["val_roc_auc"]
    assert "best" not in evaluate(tmp_path / "alone")

    # the report: the leaderboard, best on val first, and the metric against each swept value
    review = review_head(tmp_path / "swept", worst=0)
    page = sweep_leaderboard(review.sweep)
    ranked = sorted(rows, key=lambda row: -row["val_roc_auc"])
    assert page.count("<tr") == 9 and page.count('<tr class="kept">') == 1
    assert page.index(f">{ranked[0]['val_roc_auc']:.4g}<") < page.index(f">{ranked[-1]['val_roc_auc']:.4g}<")
    assert "data:image/png;base64," in page and "Sweep: 8 configurations, kept by val_roc_auc" in page
    assert review_head(tmp_path / "alone", worst=0).sweep is None

    # a damaged table is one line naming the file and the fix
    (tmp_path / "swept" / SWEEP).write_text('{"rows": [')
    with pytest.raises(UserError, match=r"swept/sweep.json is damaged: rerun the head's train stage"):
        evaluate(tmp_path / "swept")


def test_early_stopping_keeps_the_best_epoch_of_each_configuration(synthetic, tmp_path):
    inputs = resolve(INPUTS[:1], synthetic["stores"])
    # regression's selection metric is val mse, lower is better; a high learning rate overfits fast
    config = config_for(
        synthetic, tmp_path, "regression", "value", inputs, epochs=40, patience=2, sweep={"lr": [3e-2, 1e-3]}
    )
    train(config, tmp_path / "swept")
    rows = json.loads((tmp_path / "swept" / SWEEP).read_text())["rows"]
    fast = rows[0]
    assert fast["epochs_run"] < 40 and fast["epochs_run"] == fast["best_epoch"] + 2
    history = json.loads((tmp_path / "swept" / "history.json").read_text())
    kept = next(row for row in rows if row["best"])
    assert len(history) == kept["epochs_run"]
    assert kept["val_mse"] == min(entry["val_mse"] for entry in history)

    # the weights kept are those of the best epoch: what training that many epochs alone gives
    alone = config_for(synthetic, tmp_path, "regression", "value", inputs, epochs=kept["best_epoch"], lr=kept["lr"])
    train(alone, tmp_path / "alone")
    assert same_weights(Checkpoint.load(tmp_path / "swept"), Checkpoint.load(tmp_path / "alone"))


def test_an_inputs_own_options_and_the_mlp_widths_sweep(synthetic, tmp_path):
    inputs = resolve(INPUTS[1:], synthetic["stores"])
    sweep = {"seq.hidden": [4, 8], "hidden": [[], [16]]}
    config = config_for(synthetic, tmp_path, "multi_class", "action", inputs, epochs=3, sweep=sweep)
    assert [values for values, _ in config.configurations()][1] == {"seq.hidden": 4, "hidden": (16,)}
    train(config, tmp_path / "head")
    rows = json.loads((tmp_path / "head" / SWEEP).read_text())["rows"]
    assert [(row["seq.hidden"], row["hidden"]) for row in rows] == [(4, []), (4, [16]), (8, []), (8, [16])]
    best = next(row for row in rows if row["best"])
    chosen = Checkpoint.load(tmp_path / "head").config
    assert chosen.inputs[0].hidden == best["seq.hidden"] and list(chosen.hidden) == best["hidden"]
    assert chosen.sweep == {}


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"batch_size": [8, 16]}, "sweep.batch_size: cannot be swept (one pass shares every batch"),
        ({"seed": [0, 1]}, "sweep.seed: cannot be swept"),
        ({"audio.hidden": [8]}, "sweep.audio.hidden: no input named 'audio'; the inputs are ['pooled']"),
        ({"pooled.max_len": [8]}, "sweep.pooled.max_len: an input's 'max_len' cannot be swept"),
        ({"lr": []}, "sweep.lr: give a list of at least one value"),
        ({"lr": [1e-3, "fast"]}, "sweep.lr[1]: 'fast' is not a number"),
        ({"lr": [1e-3, -1.0]}, "(sweep point {'lr': -1.0}): epochs, batch_size and lr must be positive"),
    ],
)
def test_a_bad_sweep_names_the_key_and_what_may_be_swept(sweep, message):
    values = {"task": "binary", "target": "y", "inputs": [{"store": "s/pooled"}], "sweep": sweep}
    with pytest.raises(ConfigError) as caught:
        head_config("h", values)
    assert message in str(caught.value)


def test_a_sweep_needs_val_videos(synthetic, tmp_path):
    rows = [{**row, "split": "train" if row["split"] == "val" else row["split"]} for row in synthetic["rows"]]
    inputs = resolve(INPUTS[:1], synthetic["stores"])
    config = config_for(synthetic, tmp_path, "binary", "binary", inputs, rows=rows, sweep={"lr": [1e-3, 1e-2]})
    with pytest.raises(UserError, match="a sweep keeps its best configuration on val"):
        train(config, tmp_path / "head")
