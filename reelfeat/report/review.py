"""What the report shows of one trained head: its test scores, per-class table, worst test videos and,
for heads that pool with attention, the attention weights over those videos' rows.

The test split's ids, truth and scores are the ones `evaluate` wrote (`test_scores.npz`), so the
report shows exactly what the metrics were computed from and runs no head over the split again.
Only the attention weights of the few worst videos are computed here, through the same loader
`evaluate` uses (`load_head`, `check_stores`, `HeadData`), so they never come from a store the head
was not trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn import metrics as sk

from heads.checkpoint import load_head
from heads.config import HeadConfig
from heads.data import HeadData
from heads.evaluate import read_scores
from heads.kinds import Task
from heads.metrics import average_precisions
from heads.models import AttentionPool, AttentiveProbe, HeadModel, ZeroShotHead
from heads.train import read_sweep


@dataclass
class Mistake:
    """One test video the head got (most) wrong: why, and how wrong (larger is worse)."""

    vid: str
    error: float
    what: str
    attention: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # input -> (times, weights)


@dataclass
class HeadReview:
    name: str
    config: HeadConfig
    task: Task
    metrics: dict
    history: list[dict]
    thresholds: dict
    ids: list[str]  # test videos, in the order of truth and scores
    truth: np.ndarray
    scores: np.ndarray
    per_class: list[dict]  # class, support, ap, f1 (and threshold for multi-label)
    worst: list[Mistake]
    sweep: dict | None = None  # sweep.json where `train` tried several configurations, else None


def review_head(head_dir: Path, worst: int) -> HeadReview:
    model, checkpoint = load_head(head_dir)
    config, task = model.config, model.task
    ids, truth, scores = read_scores(head_dir)
    thresholds = checkpoint.thresholds
    mistakes = worst_videos(task, thresholds, ids, truth, scores)[:worst]
    if mistakes and attention_pools(model):
        checkpoint.check_stores()
        data = HeadData.load(config)
        index = {vid: i for i, vid in enumerate(data.ids)}
        for mistake in mistakes:
            mistake.attention = attention_weights(model, data, index[mistake.vid])
    history_file = head_dir / "history.json"
    return HeadReview(
        name=head_dir.name,
        config=config,
        task=task,
        metrics=json.loads((head_dir / "metrics.json").read_text(encoding="utf-8")),
        history=json.loads(history_file.read_text(encoding="utf-8")) if history_file.is_file() else [],
        thresholds=thresholds,
        ids=ids,
        truth=truth,
        scores=scores,
        per_class=per_class_table(task, thresholds, truth, scores),
        worst=mistakes,
        sweep=read_sweep(head_dir),
    )


def per_class_table(task: Task, thresholds: dict, truth: np.ndarray, scores: np.ndarray) -> list[dict]:
    """Per label or class (where the task has them): test support, average precision, and F1 at the
    decision the head makes (the label's tuned threshold, or the top-scored class)."""
    decided = task.kind.decisions(task, thresholds, truth, scores)
    if decided is None:
        return []
    y, chosen, cuts = decided
    table, ap = [], average_precisions(y, scores)
    for j, name in enumerate(task.classes):
        support = int(y[:, j].sum())
        table.append(
            {
                "class": name,
                "support": support,
                "ap": float(ap[j]) if support else None,
                "f1": float(sk.f1_score(y[:, j], chosen[:, j], zero_division=0)) if len(y) else None,
                "threshold": cuts[j],
            }
        )
    return table


def worst_videos(task: Task, thresholds: dict, ids: list[str], truth: np.ndarray, scores: np.ndarray) -> list[Mistake]:
    """Test videos ordered from the worst: classification by how far the score of a wrong answer is
    from the truth (false positives and negatives first, then the closest calls); regression by the
    absolute error in units of the test targets' spread."""
    spread = truth.std(0) if len(truth) > 1 else np.ones(truth.shape[1:])  # regression's unit of error
    spread = np.where(spread > 0, spread, 1.0)
    mistakes = []
    for vid, y, p in zip(ids, truth, scores, strict=True):
        error, what = task.kind.mistake(task, thresholds, y, p, spread)
        mistakes.append(Mistake(vid, error, what))
    return sorted(mistakes, key=lambda m: -m.error)


def attention_pools(model: HeadModel | ZeroShotHead) -> dict[str, AttentionPool | AttentiveProbe]:
    """The inputs this head pools with attention (attention pooling, LSTM attention, the attentive
    probe), by input key."""
    if not isinstance(model, HeadModel):
        return {}
    pools = {}
    for key, encoder in model.encoders.items():
        pool = encoder if isinstance(encoder, AttentionPool | AttentiveProbe) else getattr(encoder, "pool", None)
        if isinstance(pool, AttentionPool | AttentiveProbe):
            pools[key] = pool
    return pools


@torch.inference_mode()
def attention_weights(
    model: HeadModel | ZeroShotHead, data: HeadData, video: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each input pooled with attention (attention pooling, LSTM attention, the attentive probe):
    the weight of each row the head read for this video (its first view, where it has several), at the
    row's time in seconds."""
    captured: dict[str, np.ndarray] = {}
    hooks = []
    for key, pool in attention_pools(model).items():

        def keep(module, inputs, output, key=key):
            captured[key] = module.weights(*inputs)[0].numpy()

        hooks.append(pool.register_forward_hook(keep))
    try:
        model.eval()
        model(data.batch(np.array([video])))
    finally:
        for hook in hooks:
            hook.remove()
    weights = {}
    for inp in data.inputs:
        if inp.spec.key not in captured:
            continue
        times = data.times_read(inp, data.ids[video])  # with several views, the first view's rows
        weights[inp.spec.key] = (times.astype(np.float64), captured[inp.spec.key][: len(times)].astype(np.float64))
    return weights
