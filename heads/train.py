"""Train one head on cached features: seed, data, configurations, models, loop, choice, thresholds, checkpoint.

Reads top to bottom in the order it runs. A head with a `sweep` trains every configuration in the
same pass: each batch is read once and every configuration still training takes a step on it,
each with its own optimizer and its own stream of dropout draws, so a configuration trains exactly
as it would alone (the sweep's best is the checkpoint `train` gives that configuration by itself).
The best on val by the task's selection metric is kept; `sweep.json` lists them all.

Deterministic on the CPU: the same inputs and seed give the same checkpoint and metrics, byte for byte.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
SWEEP = "sweep.json"  # one row per configuration (one without a sweep): its values, val metric, epochs run, seconds


@torch.inference_mode()
def predict_scores(
    model: HeadModel | ZeroShotHead, data: HeadData, videos: np.ndarray, batch_size: int = EVAL_BATCH
) -> np.ndarray:
    """Scores (probabilities, or values in original units) of the given videos, in order; where inputs
    are read view by view, the mean of every view's scores."""
    model.eval()
    if not len(videos):
        return np.zeros((0, model.task.out_dim))
    scores = 0.0
    for view in range(data.views):
        logits = [
            model(data.batch(videos[i : i + batch_size], view=view))[0].numpy()
            for i in range(0, len(videos), batch_size)
        ]
        scores = scores + model.task.scores(np.concatenate(logits))
    return scores / data.views


@dataclass
class Run:
    """One configuration in training: its model and optimizer, its own dropout draws, and its record."""

    values: dict[str, Any]  # the swept values ({} without a sweep)
    config: HeadConfig
    task: Task
    targets: torch.Tensor
    model: HeadModel | ZeroShotHead
    optimizer: torch.optim.Optimizer | None
    rng_state: torch.Tensor  # torch's generator state between this run's steps
    history: list[dict] = field(default_factory=list)
    score: float = float("-inf")  # the selection value (higher is better) of the epoch kept
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # with patience: the weights of the best epoch
    waited: int = 0  # epochs since the selection value last improved
    seconds: float = 0.0  # time in this run's own steps and validation passes
    train_loss: float = 0.0  # summed over the epoch

    def active(self, epoch: int) -> bool:
        return epoch < self.epochs and (self.config.patience is None or self.waited < self.config.patience)

    @property
    def epochs(self) -> int:
        return 0 if self.optimizer is None else self.config.epochs

    def step(self, inputs: dict[str, object], videos: np.ndarray) -> None:
        started = time.perf_counter()
        torch.set_rng_state(self.rng_state)
        _, loss = self.model(inputs, self.targets[videos])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.rng_state = torch.get_rng_state()
        self.train_loss += loss.item() * len(videos)
        self.seconds += time.perf_counter() - started


def train(config: HeadConfig, out_dir: str | Path, data: HeadData | None = None) -> Path:
    """Train (every configuration of a sweep), keep the best on `val`, tune its decision thresholds
    on `val`, and save its checkpoint; returns its path."""
    with deterministic(config.seed) as rng:  # seed: every random choice comes from these
        return _train(config, Path(out_dir), data, rng)


def _train(config: HeadConfig, out_dir: Path, data: HeadData | None, rng: np.random.Generator) -> Path:
    # data: features of the videos every input has; the split comes from the prepared manifest
    data = data or HeadData.load(config)
    train_idx, val_idx = data.split("train"), data.split("val")
    if len(train_idx) == 0:
        raise UserError(f"{config.manifest}: no training videos with features in every input store")
    points = config.configurations()
    if len(points) > 1 and len(val_idx) == 0:
        raise UserError(
            f"{config.manifest}: a sweep keeps its best configuration on val, and no val video has features"
        )

    # runs: per configuration its task (targets, loss and output size, fitted on the training split
    # only), model and optimizer, each model initialised from the seed as it would be alone; a
    # zero-shot head learns nothing: its labels' text embeddings are the model
    runs = []
    for values, point in points:
        task = Task.fit(point, data.rows, [data.rows[i] for i in train_idx])
        torch.manual_seed(point.seed)
        model = build_head(point, data.dims(), task)
        optimizer = None
        if point.kind == "zero_shot":
            model.set_labels(*embed_labels(point, task, data.schema()))
        else:
            # fused: one kernel per step for all parameters (9x faster than the per-tensor loop on this CPU)
            optimizer = torch.optim.Adam(model.parameters(), lr=point.lr, weight_decay=point.weight_decay, fused=True)
        targets = torch.from_numpy(task.encode(data.rows))
        runs.append(Run(values, point, task, targets, model, optimizer, torch.get_rng_state()))

    # val's truth, the same for every run: it depends on the kind and columns, which a sweep never varies
    val_truth = runs[0].task.truth([data.rows[i] for i in val_idx]) if len(val_idx) else None

    # loop: shuffled minibatches, one pass per epoch, each batch read once for every run still training;
    # then one validation pass, its batches also shared, for the loss and the selection metric
    for epoch in range(max(run.epochs for run in runs)):
        active = [run for run in runs if run.active(epoch)]
        if not active:
            break
        order = rng.permutation(train_idx)
        for run in active:
            run.model.train()
            run.train_loss = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            inputs = data.batch(batch, rng)
            for run in active:
                run.step(inputs, batch)
        for run in active:
            run.history.append({"epoch": epoch + 1, "train_loss": round(run.train_loss / len(train_idx), 6)})
        if len(val_idx):
            validate(active, data, val_idx, val_truth, epoch + 1)

    # choice: the best run on val (the first of equals, in the sweep's order), at its best epoch
    for run in runs:
        if run.best_state is not None:
            run.model.load_state_dict(run.best_state)
    best = runs[0] if len(runs) == 1 else max(runs, key=lambda run: run.score)

    # thresholds: tuned on the validation split only, never on test
    thresholds = best.task.kind.untuned_thresholds(best.task.out_dim)
    if len(val_idx):
        thresholds = best.task.kind.tune_thresholds(
            best.task.truth([data.rows[i] for i in val_idx]), predict_scores(best.model, data, val_idx)
        )

    # checkpoint: weights plus everything needed to use them (config, task, thresholds, store schemas)
    path = Checkpoint(best.config, best.task, best.model.state_dict(), thresholds, data.schema()).save(
        out_dir / CHECKPOINT
    )
    write_text(out_dir / "history.json", json.dumps(best.history, indent=1) + "\n")
    write_text(out_dir / SWEEP, json.dumps(sweep_table(config, runs, best), indent=1) + "\n")
    return path


@torch.inference_mode()
def validate(runs: list[Run], data: HeadData, val_idx: np.ndarray, truth: np.ndarray, epoch: int) -> None:
    """Each run's val loss and selection metric after an epoch, reading val's batches once for all;
    a run keeps its weights of the best epoch so far where it stops early (patience)."""
    scores: list[np.ndarray | float] = [0.0] * len(runs)
    totals = [0.0] * len(runs)
    for run in runs:
        run.model.eval()
    for view in range(data.views):  # every view of a video, its scores averaged (one view: whole videos)
        logits: list[list[np.ndarray]] = [[] for _ in runs]
        for start in range(0, len(val_idx), EVAL_BATCH):  # batch by batch: the split need not fit in memory
            batch = val_idx[start : start + EVAL_BATCH]
            inputs = data.batch(batch, view=view)
            for i, run in enumerate(runs):
                started = time.perf_counter()
                out, loss = run.model(inputs, run.targets[batch])
                logits[i].append(out.numpy())
                totals[i] += loss.item() * len(batch)
                run.seconds += time.perf_counter() - started
        for i, run in enumerate(runs):
            scores[i] = scores[i] + run.task.scores(np.concatenate(logits[i])) / data.views
    for i, run in enumerate(runs):
        val_loss = totals[i] / len(val_idx) / data.views
        kind = run.task.kind
        value = kind.selection_value(run.task, truth, scores[i])
        # higher is better; where val cannot give the metric (one class in val) the loss decides
        score = -val_loss if value is None else (-value if kind.lower_is_better else value)
        run.history[-1] |= {"val_loss": round(val_loss, 6), f"val_{kind.selection}": value}
        if score > run.score or epoch == 1:
            run.score, run.best_epoch, run.waited = score, epoch, 0
            if run.config.patience is not None:
                run.best_state = {key: tensor.detach().clone() for key, tensor in run.model.state_dict().items()}
        else:
            run.waited += 1
        if run.config.patience is None:  # without early stopping the last epoch is the one kept
            run.score, run.best_epoch = score, epoch


def sweep_table(config: HeadConfig, runs: list[Run], best: Run) -> dict[str, Any]:
    """The keys swept, the val metric that chose (and which way is better), and one row per
    configuration: its swept values, that metric and the val loss at the epoch kept, the epochs it
    ran, seconds in its own steps, and whether it is the one kept."""
    kind = best.task.kind
    metric = f"val_{kind.selection}"
    rows = []
    for run in runs:
        kept = next((entry for entry in run.history if entry["epoch"] == run.best_epoch), {})
        rows.append(
            {
                **{key: list(value) if isinstance(value, tuple) else value for key, value in run.values.items()},
                metric: kept.get(metric),
                "val_loss": kept.get("val_loss"),
                "epochs_run": len(run.history),
                "best_epoch": run.best_epoch,
                "seconds": round(run.seconds, 3),
                "best": run is best,
            }
        )
    return {"swept": list(config.sweep), "metric": metric, "lower_is_better": kind.lower_is_better, "rows": rows}


def read_sweep(head_dir: str | Path) -> dict[str, Any] | None:
    """What `sweep_table` wrote for the head in `head_dir` where it tried several configurations; None
    for one (or a head trained before sweeps). A damaged file is one line naming it and the fix."""
    path = Path(head_dir) / SWEEP
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        several = len(table["rows"]) > 1 and sum(bool(row["best"]) for row in table["rows"]) == 1
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is damaged: rerun the head's train stage (dvc repro)") from None
    return table if several else None


def kept_row(table: dict[str, Any]) -> dict[str, Any]:
    """The row of the configuration a sweep kept."""
    return next(row for row in table["rows"] if row["best"])
