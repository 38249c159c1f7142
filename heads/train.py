"""Train one head on cached features: seed, data, task, model, optimizer, loop, thresholds, checkpoint.

Reads top to bottom in the order it runs. Deterministic on the CPU: the same inputs and seed
give the same checkpoint and the same metrics, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from extract.core.determinism import deterministic
from extract.core.errors import UserError
from extract.core.files import write_text
from heads.checkpoint import CHECKPOINT, Checkpoint
from heads.config import HeadConfig
from heads.data import HeadData
from heads.kinds import Task
from heads.models import HeadModel, ZeroShotHead, build_head
from heads.zero_shot import embed_labels

EVAL_BATCH = 256  # videos per forward pass where nothing is learned (validation loss, scores)


@torch.inference_mode()
def predict_scores(
    model: HeadModel | ZeroShotHead, data: HeadData, videos: np.ndarray, batch_size: int = EVAL_BATCH
) -> np.ndarray:
    """Scores (probabilities, or values in original units) of the given videos, in order."""
    model.eval()
    logits = [model(data.batch(videos[i : i + batch_size]))[0].numpy() for i in range(0, len(videos), batch_size)]
    return model.task.scores(np.concatenate(logits)) if logits else np.zeros((0, model.task.out_dim))


def train(config: HeadConfig, out_dir: str | Path, data: HeadData | None = None) -> Path:
    """Train, tune decision thresholds on `val`, and save the checkpoint; returns its path."""
    with deterministic(config.seed) as rng:  # seed: every random choice comes from these
        return _train(config, Path(out_dir), data, rng)


def _train(config: HeadConfig, out_dir: Path, data: HeadData | None, rng: np.random.Generator) -> Path:
    # data: features of the videos every input has; the split comes from the prepared manifest
    data = data or HeadData.load(config)
    train_idx, val_idx = data.split("train"), data.split("val")
    if len(train_idx) == 0:
        raise UserError(f"{config.manifest}: no training videos with features in every input store")

    # task: targets, loss and output size, fitted on the training split only
    task = Task.fit(config, data.rows, [data.rows[i] for i in train_idx])
    targets = torch.from_numpy(task.encode(data.rows))

    # model and optimizer; a zero-shot head learns nothing: its labels' text embeddings are the model
    model = build_head(config, data.dims(), task)
    epochs = config.epochs
    if config.kind == "zero_shot":
        model.set_labels(*embed_labels(config, task, data.schema()))
        epochs = 0
    else:
        # fused: one kernel per step for all parameters (its step ran 9x faster than the per-tensor loop on this CPU)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)

    # loop: shuffled minibatches, one pass per epoch, validation loss after each
    history = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(train_idx)
        losses = []
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            _, loss = model(data.batch(batch, rng), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(batch))
        entry = {"epoch": epoch + 1, "train_loss": round(sum(losses) / len(train_idx), 6)}
        if len(val_idx):
            model.eval()
            total = 0.0
            with torch.inference_mode():  # batch by batch: the whole split need not fit in memory
                for start in range(0, len(val_idx), EVAL_BATCH):
                    batch = val_idx[start : start + EVAL_BATCH]
                    total += model(data.batch(batch), targets[batch])[1].item() * len(batch)
            entry["val_loss"] = round(total / len(val_idx), 6)
        history.append(entry)

    # thresholds: tuned on the validation split only, never on test
    thresholds = task.kind.untuned_thresholds(task.out_dim)
    if len(val_idx):
        thresholds = task.kind.tune_thresholds(
            task.truth([data.rows[i] for i in val_idx]), predict_scores(model, data, val_idx)
        )

    # checkpoint: weights plus everything needed to use them (config, task, thresholds, store schemas)
    path = Checkpoint(config, task, model.state_dict(), thresholds, data.schema()).save(out_dir / CHECKPOINT)
    write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")
    return path
