"""Heads on synthetic feature stores: learning, chance on shuffled labels, padding, metrics, thresholds,
reproducibility, checkpoints and predict."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import DIM, ROOT, config_for, resolve, write_manifest, write_store
from sklearn import metrics as sk

from extract.core.config import ConfigError
from extract.core.errors import UserError
from heads.checkpoint import CheckpointError, load_head
from heads.config import head_config
from heads.data import HeadData
from heads.evaluate import evaluate
from heads.kinds import KINDS, Task
from heads.metrics import (
    average_precisions,
    best_f1_threshold,
    gap,
    hit_at_k,
    mean_average_precision,
    roc_points,
)
from heads.train import predict_scores, train


def fit_and_score(config, out: Path) -> dict:
    train(config, out)
    return evaluate(out)["test"]


ARCHES = {
    "mlp": [{"store": "pooled", "pool": "mean"}],
    "linear_probe": [{"store": "pooled", "pool": "max"}],
    "attention": [{"store": "seq", "pool": "attention", "hidden": 16}],
    "lstm_self": [{"store": "seq", "pool": "lstm", "hidden": 16}],
    "lstm_text_guided": [
        {"store": "pooled", "pool": "mean", "name": "text"},
        {"store": "seq", "pool": "lstm", "hidden": 16, "guide": "text"},
    ],
    "transformer": [{"store": "seq", "pool": "transformer", "hidden": 16, "heads": 2, "max_len": 8}],
    "textcnn": [{"store": "tokens", "pool": "textcnn", "filters": 16}],
    "attentive_probe": [{"store": "seq", "pool": "attentive_probe", "heads": 2}],
    # V-JEPA 2's probe: self-attention blocks over the rows, then the query's cross-attention
    "attentive_probe_vjepa2": [{"store": "seq", "pool": "attentive_probe", "heads": 2, "self_blocks": 3}],
}


@pytest.mark.parametrize("arch", list(ARCHES))
def test_each_architecture_learns_a_clear_signal(synthetic, tmp_path, arch):
    extra = {"hidden": []} if arch.startswith(("linear_probe", "attentive_probe")) else {}  # the probe's linear layer
    config = config_for(
        synthetic, tmp_path, "multi_class", "action", resolve(ARCHES[arch], synthetic["stores"]), **extra
    )
    assert fit_and_score(config, tmp_path / "head")["accuracy"] >= 0.9


@pytest.mark.parametrize(
    "task, target, metric, good",
    [
        ("binary", "binary", "roc_auc", 0.95),
        ("multi_label", "tags", "map", 0.95),
        ("multi_class", "action", "accuracy", 0.9),
        ("regression", "value", "pearson", 0.95),
        ("multi_regression", ["value", "other"], "pearson", 0.95),
        ("quantile", "value", "accuracy", 0.6),
    ],
)
def test_each_task_learns_and_stays_at_chance_on_shuffled_labels(synthetic, tmp_path, task, target, metric, good):
    inputs = resolve(ARCHES["mlp"], synthetic["stores"])
    learned = fit_and_score(config_for(synthetic, tmp_path, task, target, inputs), tmp_path / "learned")
    assert learned[metric] >= good, learned
    rng = np.random.default_rng(1)
    columns = [target] if isinstance(target, str) else target
    shuffled = [dict(r) for r in synthetic["rows"]]
    for column in columns:
        values = [r[column] for r in shuffled]
        for r, v in zip(shuffled, rng.permutation(values), strict=True):
            r[column] = v
    chance = fit_and_score(config_for(synthetic, tmp_path, task, target, inputs, rows=shuffled), tmp_path / "chance")
    assert chance[metric] < good - 0.2, chance


@pytest.mark.parametrize(
    "arch", ["attention", "lstm_self", "lstm_text_guided", "transformer", "textcnn", "attentive_probe"]
)
def test_padding_never_changes_a_prediction(synthetic, tmp_path, arch):
    config = config_for(
        synthetic, tmp_path, "multi_class", "action", resolve(ARCHES[arch], synthetic["stores"]), epochs=1
    )
    train(config, tmp_path / "head")
    model, _ = load_head(tmp_path / "head")
    data = HeadData.load(config)
    lengths = {vid: data.inputs[-1].counts[i] for vid, i in data.inputs[-1].position.items()}
    short = min(range(len(data.ids)), key=lambda i: lengths[data.ids[i]])
    long = max(range(len(data.ids)), key=lambda i: lengths[data.ids[i]])
    alone = predict_scores(model, data, np.array([short]))
    padded = predict_scores(model, data, np.array([long, short]))[1:]  # batched with the longest: more padding
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_the_attentive_probe_shows_the_report_its_weights_and_checks_its_heads(synthetic, tmp_path):
    from reelfeat.report.review import attention_weights

    inputs = resolve(ARCHES["attentive_probe"], synthetic["stores"])
    config = config_for(synthetic, tmp_path, "multi_class", "action", inputs, epochs=1, hidden=[])
    train(config, tmp_path / "head")
    model, _ = load_head(tmp_path / "head")
    data = HeadData.load(config)
    times, weights = attention_weights(model, data, 0)["seq"]
    seq = data.inputs[0]
    assert len(times) == len(weights) == min(seq.counts[seq.position[data.ids[0]]], 64)
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0, abs=1e-5)
    odd = config_for(synthetic, tmp_path, "multi_class", "action", [{**inputs[0], "heads": 3}], epochs=1)
    with pytest.raises(ConfigError, match="3 attention heads do not divide its width .*set heads: to a divisor"):
        train(odd, tmp_path / "odd")


def test_gap_and_hit_at_k_on_worked_examples():
    y = np.array([[1, 0, 0], [0, 1, 1]])
    p = np.array([[0.9, 0.8, 0.1], [0.7, 0.6, 0.2]])
    assert hit_at_k(y, p, 1) == 0.5  # video 1's top label is right, video 2's (0.7 on class 0) is not
    assert hit_at_k(y, p, 2) == 1.0
    # top-2 pooled by score: 0.9 (hit), 0.8 (miss), 0.7 (miss), 0.6 (hit); precisions at hits: 1/1, 2/4;
    # divided by all 3 true labels
    assert gap(y, p, top_k=2) == pytest.approx((1.0 + 0.5) / 3)
    # top-3: ... then 0.2 (hit) 5th and 0.1 (miss) 6th: precision 3/5 at the third hit
    assert gap(y, p, top_k=3) == pytest.approx((1.0 + 0.5 + 3 / 5) / 3)


def test_average_precision_per_label_is_scikit_learns_with_ties_and_nan_without_positives():
    rng = np.random.default_rng(1)
    y = (rng.random((40, 5)) > 0.5).astype(int)
    y[:, 4] = 0
    p = np.round(rng.random((40, 5)), 1)  # ties: runs of equal scores
    got = average_precisions(y, p)
    expected = [sk.average_precision_score(y[:, j], p[:, j]) for j in range(4)]
    np.testing.assert_allclose(got[:4], expected, rtol=1e-12)
    assert np.isnan(got[4])
    fpr, tpr, _ = sk.roc_curve(y[:, 0], p[:, 0])
    np.testing.assert_array_equal(np.stack(roc_points(y[:, 0], p[:, 0])), np.stack([fpr, tpr]))


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 4)) > 0.6).astype(int)
    p = np.clip(y * 0.4 + rng.random((50, 4)) * 0.6, 0, 1)
    expected = np.mean([sk.average_precision_score(y[:, j], p[:, j]) for j in range(4)])
    assert mean_average_precision(y, p) == pytest.approx(expected)
    binary = Task("binary", ("b",), "bce", ["b"])
    out = binary.kind.metrics(binary, y[:, 0], p[:, :1], {"global": 0.5})
    assert out["roc_auc"] == pytest.approx(sk.roc_auc_score(y[:, 0], p[:, 0]))
    assert out["f1"] == pytest.approx(sk.f1_score(y[:, 0], p[:, 0] >= 0.5))
    classes = Task("multi_class", ("c",), "ce", ["a", "b", "c", "d", "e", "f"])
    labels, probs = rng.integers(0, 6, 50), rng.dirichlet(np.ones(6), 50)
    out = classes.kind.metrics(classes, labels, probs, {})
    assert out["top5_accuracy"] == pytest.approx(sk.top_k_accuracy_score(labels, probs, k=5))
    assert out["f1_macro"] == pytest.approx(sk.f1_score(labels, probs.argmax(1), average="macro"))
    regression = Task("regression", ("v",), "mse", ["v"], mean=[0.0], std=[1.0])
    a, b = rng.normal(size=(50, 1)), rng.normal(size=(50, 1))
    out = regression.kind.metrics(regression, a, b, {})
    assert out["pearson"] == pytest.approx(np.corrcoef(a[:, 0], b[:, 0])[0, 1])
    assert out["mse"] == pytest.approx(np.mean((a - b) ** 2))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_task_kind_fits_scores_labels_measures_plots_and_ranks_its_videos(name):
    """The contract of a kind (heads/kinds.py): a new one passes this before any head trains on it."""
    kind = KINDS[name]
    columns = ("a", "b") if kind.columns == "several" else ("a",)
    values = {"binary": ["0", "1"], "multi_label": ["x,y", "y"], "multi_class": ["x", "y"]}.get(name, ["1.5", "4"])
    rows = [{c: values[i % 2] for c in columns} for i in range(8)]
    config = head_config(
        "t", {"task": name, "target": list(columns) if len(columns) > 1 else "a", "inputs": [{"store": "s"}]}
    )
    task = Task.fit(config, rows, rows)
    assert config.loss_name == kind.losses[0] and task.kind is kind
    assert Task(**task.state()).state() == task.state()  # as a checkpoint carries it
    logits = np.random.default_rng(0).normal(size=(8, task.out_dim)).astype(np.float32)
    loss = task.loss(torch.from_numpy(logits), torch.from_numpy(task.encode(rows)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    truth, scores = task.truth(rows), task.scores(logits)
    thresholds = kind.tune_thresholds(truth, scores) or kind.untuned_thresholds(task.out_dim)
    assert set(task.kind.labels(task, thresholds, scores[0])) <= set(task.classes)
    metrics = kind.metrics(task, truth, scores, thresholds)
    assert set(kind.headline) - {"roc_auc"} <= set(metrics)
    assert set(kind.plots(task, truth, scores)) <= {"roc", "precision_recall", "confusion", "predicted"}  # dvc.yaml's
    error, what = kind.mistake(task, thresholds, truth[0], scores[0], np.ones(truth.shape[1:]))
    assert error >= 0 and what
    assert kind.chart in ("roc", "confusion", "predicted")
    # a sweep's selection metric is the metric evaluate reports, computed alone
    selected = kind.metrics(task, truth, scores, kind.untuned_thresholds(task.out_dim))[kind.selection]
    assert kind.selection_value(task, truth, scores) == selected


def test_best_threshold_maximizes_f1():
    y, p = np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.7, 0.6, 0.8, 0.9])
    threshold = best_f1_threshold(y, p)
    assert 0.1 < threshold <= 0.6  # keeps 0.6..0.9 positive: 3 of 4 right, all 3 found, F1 6/7, the best
    assert sk.f1_score(y, p >= threshold) == pytest.approx(6 / 7)


def test_sequence_inputs_are_read_per_batch_never_whole(synthetic, tmp_path):
    """Pooled inputs read each row once, to pool it; sequence inputs read nothing until a batch asks,
    then at most max_len rows of each video in the batch."""
    inputs = [
        {"store": synthetic["stores"]["pooled"], "pool": "mean", "name": "text"},
        {"store": synthetic["stores"]["seq"], "pool": "lstm", "hidden": 8, "guide": "text", "max_len": 4},
    ]
    config = config_for(synthetic, tmp_path, "multi_class", "action", inputs, epochs=1)
    data = HeadData.load(config)
    pooled, sequence = (inp.reader for inp in data.inputs)
    assert pooled.rows_read == pooled.num_rows and sequence.rows_read == 0
    assert sequence.num_rows > 4 * len(sequence)  # most videos have more rows than a batch takes
    batch = np.arange(16)
    data.batch(batch, np.random.default_rng(0))
    assert 0 < sequence.rows_read <= 4 * len(batch)
    train(config, tmp_path / "head", data)
    epoch_rows = sequence.rows_read
    assert epoch_rows <= 4 * (len(data.split("train")) + 16 + 2 * len(data.split("val")))  # one epoch, val twice


def test_a_store_grown_run_by_run_trains_the_same_head_as_one_built_in_one_go(synthetic, tmp_path):
    from extract.store import StoreBuilder, StoreReader

    source = StoreReader(synthetic["stores"]["seq"])
    recipe = source.attrs["recipe"]
    ids = source.ids

    def build(path, videos, checkpoint_s=30.0):
        builder = StoreBuilder(
            path, config=str(source.attrs["config"]), row_shape=source.row_shape, dtype=source.dtype,
            attrs={"kind": "features", "recipe": recipe}, checkpoint_s=checkpoint_s,
        )  # fmt: skip
        for vid in videos:
            if not builder.reusable(vid, "s"):
                builder.add(vid, "s", *source.get(vid))
        builder.finish([(vid, "s") for vid in videos])

    build(tmp_path / "one_go" / "seq", ids)
    for end in (len(ids) // 3, 2 * len(ids) // 3, len(ids)):  # three runs, each adding videos
        build(tmp_path / "grown" / "seq", ids[:end], checkpoint_s=0)
    assert len(StoreReader(tmp_path / "grown" / "seq").shards) > len(StoreReader(tmp_path / "one_go" / "seq").shards)
    metrics = []
    for name in ("one_go", "grown"):
        inputs = [{"store": str(tmp_path / name / "seq"), "pool": "lstm", "hidden": 8, "max_len": 6}]
        config = config_for(synthetic, tmp_path / name, "multi_class", "action", inputs, epochs=2, bootstrap=20)
        train(config, tmp_path / name / "head")
        evaluate(tmp_path / name / "head")
        metrics.append((tmp_path / name / "head" / "metrics.json").read_bytes())
    assert metrics[0] == metrics[1]


def brute_force_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Every distinct score and 0.5 tried one by one, F1 as an exact fraction; ties nearest 0.5."""
    from fractions import Fraction

    candidates = sorted({*p.tolist(), 0.5})
    scores = []
    for t in candidates:
        predicted = p >= t
        tp, positives = int((predicted & y).sum()), int(y.sum())
        scores.append(Fraction(2 * tp, int(predicted.sum()) + positives))
    best = [t for t, f in zip(candidates, scores, strict=True) if f == max(scores)]
    return min(best, key=lambda t: (abs(t - 0.5), t))


@pytest.mark.parametrize("seed", range(40))
def test_the_sorted_threshold_sweep_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[0] = True
    p = rng.integers(0, 8, n) / 8 if seed % 2 else rng.random(n)  # odd seeds: many tied scores
    assert best_f1_threshold(y, p) == brute_force_threshold(y, p)


def test_ranked_metrics_equal_recomputing_on_resampled_rows():
    """mAP equals scikit-learn's with tied scores, and a weighted pass equals the metric of the rows repeated."""
    from heads.metrics import RankedLabels

    rng = np.random.default_rng(3)
    y = (rng.random((80, 12)) < 0.2).astype(int)
    p = rng.integers(0, 10, (80, 12)) / 10 + rng.random((80, 12)) * (rng.random((80, 12)) < 0.5) / 100
    expected = np.mean([sk.average_precision_score(y[:, j], p[:, j]) for j in range(12) if y[:, j].any()])
    assert mean_average_precision(y, p) == pytest.approx(expected, abs=1e-12)
    ranked = RankedLabels(y, p)
    for _ in range(5):
        index = rng.integers(0, 80, 80)
        weights = np.bincount(index, minlength=80)
        again = RankedLabels(y[index], p[index])
        ones = np.ones(80)
        assert ranked.mean_ap(weights) == pytest.approx(again.mean_ap(ones), abs=1e-12)
        assert ranked.hit_at(1, weights) == pytest.approx(again.hit_at(1, ones), abs=1e-12)
    continuous = rng.random((80, 12))  # no ties: GAP is defined by the order alone
    index = rng.integers(0, 80, 80)
    weighted = RankedLabels(y, continuous).gap(np.bincount(index, minlength=80))
    assert weighted == pytest.approx(gap(y[index], continuous[index]), abs=1e-12)


def test_thresholds_are_tuned_on_val_and_never_see_test(synthetic, tmp_path):
    inputs = resolve(ARCHES["mlp"], synthetic["stores"])
    config = config_for(synthetic, tmp_path, "binary", "binary", inputs, epochs=3)
    train(config, tmp_path / "a")
    flipped = [dict(r, binary=str(1 - int(r["binary"]))) if r["split"] == "test" else r for r in synthetic["rows"]]
    (tmp_path / "flipped").mkdir()
    flipped_config = config_for(synthetic, tmp_path / "flipped", "binary", "binary", inputs, rows=flipped, epochs=3)
    train(flipped_config, tmp_path / "b")
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in "ab")
    assert a["thresholds"] == b["thresholds"]  # test labels changed, thresholds did not
    model, _ = load_head(tmp_path / "a")
    data = HeadData.load(config)
    val = data.split("val")
    expected = best_f1_threshold(model.task.truth([data.rows[i] for i in val]), predict_scores(model, data, val)[:, 0])
    assert a["thresholds"]["global"] == pytest.approx(expected)


def test_same_inputs_give_byte_identical_metrics(synthetic, tmp_path):
    config = config_for(
        synthetic,
        tmp_path,
        "multi_label",
        "tags",
        resolve(ARCHES["lstm_text_guided"], synthetic["stores"]),
        epochs=3,
        bootstrap=50,
    )
    for run in ("one", "two"):
        train(config, tmp_path / run)
        evaluate(tmp_path / run)
    assert (tmp_path / "one" / "metrics.json").read_bytes() == (tmp_path / "two" / "metrics.json").read_bytes()
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert set(metrics["test"]["ci95"]) == {"hit@1", "map", "gap"}
    low, high = metrics["test"]["ci95"]["map"]
    assert low <= metrics["test"]["map"] <= high


@pytest.mark.parametrize(
    "other, message",
    [
        ({"sha": "different"}, 'weights is "different" but the head was trained on "w"'),
        ({"frames": 16}, "input.view.num_frames is 16 but the head was trained on 4"),
        ({"backbone": "other"}, 'backbone.model is "other" but the head was trained on "synthetic"'),
    ],
    ids=["weights", "decode-view", "backbone"],
)
def test_checkpoint_refuses_stores_made_another_way_naming_the_key(synthetic, tmp_path, other, message):
    config = config_for(synthetic, tmp_path, "binary", "binary", resolve(ARCHES["mlp"], synthetic["stores"]), epochs=1)
    train(config, tmp_path / "head")
    _, checkpoint = load_head(tmp_path / "head")
    checkpoint.check_stores()  # the stores it was trained on pass
    rows = {f"v{i:03d}": np.zeros((1, DIM), np.float32) for i in range(3)}
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.check_stores({"pooled": write_store(tmp_path / "other", rows, **other)})


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"task": "binary", "target": "x", "inputs": [{"store": "a"}], "lr": 1e-3, "epoch": 3},
            r"unknown key\(s\) \['epoch'\]",
        ),
        ({"task": "binary", "target": "x", "inputs": [{"store": "a", "pool": "sum"}]}, "pool: 'sum' is not"),
        ({"task": "binary", "target": "x", "inputs": [{"store": "a", "guide": "b"}]}, "only lstm inputs"),
        ({"task": "binary", "target": "x", "loss": "mse", "inputs": [{"store": "a"}]}, "binary trains with"),
        ({"task": "regression", "target": ["a", "b"], "inputs": [{"store": "a"}]}, "multi_regression takes"),
        (
            {"task": "binary", "target": "x", "inputs": [{"store": "a", "pool": "lstm", "guide": "t"}]},
            "guide 't' must be a pooled input",
        ),
    ],
)
def test_bad_head_params_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        head_config("h", values)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epochs", "ten", "heads.risky.epochs: 'ten' is not an integer"),
        ("lr", "fast", "heads.risky.lr: 'fast' is not a number"),
        ("batch_size", 8.5, "heads.risky.batch_size: 8.5 is not an integer"),
        ("zscore", "yes", "heads.risky.zscore: 'yes' is not true or false"),
        ("hidden", 64, "heads.risky.hidden: 64 is not a list"),
    ],
)
def test_params_of_the_wrong_type_are_one_line_from_the_command(tmp_path, monkeypatch, capsys, key, value, message):
    from heads.__main__ import main

    params = {"heads": {"risky": {"task": "binary", "target": "risky", "inputs": [{"store": "s"}], key: value}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "risky"]) == 1
    assert capsys.readouterr().err == f"error: params.yaml {message}\n"


def test_numbers_yaml_reads_as_strings_and_whole_floats_are_taken():
    values = {"task": "binary", "target": "x", "inputs": [{"store": "a", "max_len": 32.0}], "lr": "2e-5"}
    config = head_config("h", {**values, "epochs": 3.0, "hidden": [64, 32]})
    assert (config.lr, config.epochs, config.hidden, config.inputs[0].max_len) == (2e-5, 3, (64, 32), 32)


def test_predict_round_trip_on_a_generated_video(tmp_path, monkeypatch):
    """Decode, a tiny random-weight backbone, train on its features, then predict a new video."""
    import torchvision
    from conftest import make_video

    from extract.stages.decode import run_decode, views_from_params
    from extract.stages.features import run_features
    from heads.predict import predict

    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    params = {
        "decode": {"views": {"frames": {"type": "frames", "num_frames": 2, "size": [32, 32]}}},
        "backbones": {"resnet18": {"input": "data/decoded/frames", "weights": str(weights)}},
    }
    rows = []
    for i in range(6):
        video = make_video(tmp_path / f"v{i}.mp4", seconds=1, audio=False)
        rows.append(
            {
                "id": f"v{i}",
                "video": str(video),
                "sha256": f"s{i}",
                "split": ["train", "val", "test"][i % 3],
                "kind": "yes" if i % 2 else "no",
            }
        )
    run_decode(rows, views_from_params(params["decode"]), "data/decoded", workers=1)
    run_features("resnet18", params["backbones"]["resnet18"], "data/features/resnet18", loader_workers=0)
    manifest = write_manifest(tmp_path / "m.csv", [{**r, "kind": "1" if r["kind"] == "yes" else "0"} for r in rows])
    config = head_config(
        "h",
        {
            "task": "binary",
            "target": "kind",
            "manifest": manifest,
            "epochs": 2,
            "inputs": [{"store": "data/features/resnet18"}],
            "bootstrap": 0,
        },
    )
    train(config, "data/heads/h")
    new = make_video(tmp_path / "new clip.mp4", seconds=1, audio=False)
    out = tmp_path / "out.jsonl"
    with open(out, "w") as handle:
        failed = predict(
            "data/heads/h", params, [str(new), str(tmp_path / "v0.mp4"), str(tmp_path / "gone.mp4")], None, handle
        )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert failed == 1 and [line["id"] for line in lines] == ["new clip", "v0", "gone"]
    assert set(lines[0]["scores"]) == {"kind"} and 0 <= lines[0]["scores"]["kind"] <= 1
    assert lines[0]["labels"] in ([], ["kind"]) and "file not found" in lines[2]["error"]
    # v0 went through predict's own extraction: its score equals the pipeline stores' score
    model, _ = load_head("data/heads/h")
    data = HeadData.load(config)
    pipeline = predict_scores(model, data, np.array([data.ids.index("v0")]))[0, 0]
    assert lines[1]["scores"]["kind"] == pytest.approx(pipeline, abs=1e-4)


def test_heads_build_on_the_extract_library_without_decoding_or_its_command_module():
    """Nor scikit-learn until a metric needs it: `train` pays none of its 1.8 s of imports."""
    code = (
        "import sys, heads.train, heads.evaluate, heads.dataset, heads.__main__; "
        "print(sorted(m for m in ('ffmpeg', 'extract.media', 'extract.media.views', 'extract.__main__', 'sklearn') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_missing_or_damaged_test_scores_are_one_line_naming_the_file_and_the_fix(tmp_path):
    from heads.evaluate import TEST_SCORES, read_scores

    with pytest.raises(UserError, match="no test scores at .*: run the head's evaluate stage"):
        read_scores(tmp_path)
    (tmp_path / TEST_SCORES).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match=f"{TEST_SCORES} is damaged .*rerun the head's evaluate stage") as info:
        read_scores(tmp_path)
    assert "\n" not in str(info.value)


def test_leakage_free_test_metrics_drop_exactly_the_test_videos_with_a_train_duplicate(synthetic, tmp_path):
    from heads.evaluate import evaluate_split

    inputs = resolve(ARCHES["mlp"], synthetic["stores"])
    config = config_for(synthetic, tmp_path, "binary", "binary", inputs, epochs=3)
    train(config, tmp_path / "head")
    plain = evaluate(tmp_path / "head", insight=tmp_path / "none")
    assert "test_leakage_free" not in plain
    duplicates = tmp_path / "insight" / "r" / "duplicates.csv"
    duplicates.parent.mkdir(parents=True)
    duplicates.write_text(
        "group,id,split,nearest,cosine,exact\n"
        "0,v000,train,v200,0.99,0\n0,v200,test,v000,0.99,0\n"  # leaks: a test video with a train copy
        "1,v201,test,v202,0.98,1\n1,v202,test,v201,0.98,1\n"  # two test copies: no train one, kept
        "2,v160,val,v203,0.97,0\n2,v203,test,v160,0.97,0\n"  # val and test: kept
    )
    metrics = evaluate(tmp_path / "head", insight=tmp_path / "insight")
    assert metrics["test"] == plain["test"]  # the usual figures do not change
    free = metrics["test_leakage_free"]
    assert free["dropped"] == 1 and free["insight"] == ["r"]
    model, checkpoint = load_head(tmp_path / "head")
    data = HeadData.load(config)
    kept = np.array([i for i in data.split("test") if data.ids[i] != "v200"])
    truth = model.task.truth([data.rows[i] for i in kept])
    expected = evaluate_split(model.task, truth, predict_scores(model, data, kept), checkpoint.thresholds, 0, 0)
    assert {k: v for k, v in free.items() if k not in ("dropped", "insight")} == pytest.approx(expected)
