"""Train a ConvLSTM autoencoder (`extract.backbones.convlstm`) on the train split of a decoded frames view.

Reads top to bottom in the order it runs: seed, data, model and optimizer, loop, checkpoint, pictures.
Batches are read from the decoded store, so memory holds one batch whatever the number of videos.
Only `train` videos are learned from; `val` videos give the loss history's second curve and the
pictures. Deterministic on the CPU: the same frames and params give the same checkpoint.

Writes into its folder: `model.pt` (what `encode@NAME` loads), `history.json` (loss per epoch, for
`dvc plots`) and `strips/<id>.png` (a few validation videos' frames above their reconstructions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from extract.backbones.convlstm import (
    CHECKPOINT,
    ConvLSTMAutoencoder,
    ConvLSTMConfig,
    frames_to_input,
    require_frame_sequences,
)
from extract.core.determinism import deterministic
from extract.core.errors import UserError
from extract.core.files import atomic_path, write_text
from extract.stages.manifest import read_prepared
from extract.store import StoreReader

EVAL_BATCH = 16


def train_encoder(config: ConvLSTMConfig, out_dir: str | Path) -> Path:
    """Train, then write the checkpoint, the loss history and the pictures; returns the checkpoint's path."""
    with deterministic(config.seed) as rng:  # seed: every random choice comes from these
        return _train_encoder(config, Path(out_dir), rng)


def _train_encoder(config: ConvLSTMConfig, out_dir: Path, rng: np.random.Generator) -> Path:

    # data: the view's videos in the manifest's train and val splits, read a batch at a time
    store = StoreReader(config.input)
    view = require_frame_sequences(store.recipe, config.input)
    split = {row["id"]: row.get("split", "") for row in read_prepared(config.manifest)}
    train_ids = [vid for vid in store.ids if split.get(vid) == "train"]
    val_ids = [vid for vid in store.ids if split.get(vid) == "val"]
    if not train_ids:
        raise UserError(f"{config.manifest}: no `train` videos in {config.input}; the encoder learns from them")

    def batch(ids: list[str]) -> torch.Tensor:
        return torch.stack([frames_to_input(store.get(vid)[0], config.size) for vid in ids])

    # model and optimizer
    model = ConvLSTMAutoencoder(**config.architecture())
    model.start_at(float(np.mean([store.get(vid)[0].mean() for vid in train_ids])) / 255)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def loss_of(frames: torch.Tensor) -> torch.Tensor:  # mean squared error per pixel, values in [0, 1]
        return F.mse_loss(torch.sigmoid(model(frames)), frames)

    # loop: shuffled minibatches of the train split, one pass per epoch, validation loss after each
    history = []
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(len(train_ids))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            ids = [train_ids[i] for i in order[start : start + config.batch_size]]
            loss = loss_of(batch(ids))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(ids)
        entry = {"epoch": epoch + 1, "train_loss": round(total / len(train_ids), 6)}
        if val_ids:
            model.eval()
            with torch.inference_mode():
                total = sum(
                    loss_of(batch(val_ids[i : i + EVAL_BATCH])).item() * len(val_ids[i : i + EVAL_BATCH])
                    for i in range(0, len(val_ids), EVAL_BATCH)
                )
            entry["val_loss"] = round(total / len(val_ids), 6)
        history.append(entry)

    # checkpoint: the weights, the architecture they fit, and how they were learned
    path = out_dir / CHECKPOINT
    with atomic_path(path) as tmp:
        torch.save(
            {
                "architecture": config.architecture(),
                "state_dict": model.state_dict(),
                "trained_on": {"view": view, "train_videos": len(train_ids), "history": history},
            },
            tmp,
        )
    write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")

    # pictures: what it learned to rebuild, for a person to look at
    write_strips(
        model, out_dir / "strips", {vid: store.get(vid)[0] for vid in (val_ids or train_ids)[: config.strips]}, config
    )
    return path


@torch.inference_mode()
def write_strips(
    model: ConvLSTMAutoencoder, folder: Path, videos: dict[str, np.ndarray], config: ConvLSTMConfig
) -> None:
    """One PNG per video: its frames in a row, their reconstructions in the row below."""
    from PIL import Image

    for old in folder.glob("*.png"):
        old.unlink()
    model.eval()
    for vid, frames in videos.items():
        x = frames_to_input(frames, config.size)[None]
        rows = torch.cat([x, torch.sigmoid(model(x))], dim=0)  # (2, T, 3, H, W)
        picture = rows.permute(0, 3, 1, 4, 2).flatten(2, 3).flatten(0, 1)  # (2H, T*W, 3)
        with atomic_path(folder / f"{vid.replace('/', '__')}.png") as tmp:
            Image.fromarray((picture * 255).round().to(torch.uint8).numpy()).save(tmp, format="PNG")
