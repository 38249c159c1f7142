"""A ConvLSTM autoencoder learned on the dataset's own frames (the success-prediction seed's visual branch).

Unlike the other families its weights are not downloaded: `python -m extract train-encoder NAME`
trains it on the train split of a decoded frames view (`extract/stages/train_encoder.py`) and writes
`data/encoders/NAME/model.pt`; the `encode@NAME` stage then embeds every video with it, through the
same extraction loop as any backbone.

The encoder: two stride-2 convolutions per frame, then stacked ConvLSTM layers over the frames in
time order (Shi et al. 2015). The decoder: ConvLSTM layers started from the encoder's last states,
unrolled without input, each step upsampled back to a frame; it rebuilds the frames in reverse order,
as Srivastava et al. (2015) did, so the first frames it must produce are the ones the encoder saw
last. Rows: one per frame, the last encoder layer's hidden state at that step averaged over space.
A step's row summarises the frames up to it, so the rows are a sequence a Transformer head can read
(as the seed did) and the last row summarises the whole view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from extract.backbones import Backbone, BackboneConfig, Rows, Units, VideoInput, register_backbone
from extract.backbones.weights import ResolvedWeights, WeightsError, local_files
from extract.core import project
from extract.core.config import ConfigError
from extract.core.recipe import Recipe

CHECKPOINT = "model.pt"


def encoder_checkpoint(name: str) -> Path:
    """Where `train-encoder NAME` writes its checkpoint and `encode@NAME` reads it."""
    return project.encoder(name) / CHECKPOINT


@dataclass(frozen=True)
class ConvLSTMConfig(BackboneConfig):
    """`encoders.<name>`: the frames view it reads (`input`), the architecture, and how it is trained."""

    manifest: str = str(project.MANIFEST)  # whose `split` column picks the training videos
    size: tuple[int, int] = (64, 64)  # frames are resized to this (height, width); multiples of 4
    channels: tuple[int, int] = (16, 32)  # the two stride-2 convolutions before the ConvLSTM
    hidden: tuple[int, ...] = (32, 32)  # ConvLSTM layers' channels; the last is the row width
    kernel: int = 3
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    strips: int = 4  # validation videos drawn next to their reconstructions
    not_in_recipe: ClassVar[tuple[str, ...]] = ("input", "weights", "manifest", "strips")

    def validate(self, where: str) -> None:
        super().validate(where)
        if len(self.size) != 2 or any(s < 4 or s % 4 for s in self.size):
            raise ConfigError(f"{where}.size: [height, width], each a multiple of 4 (two stride-2 steps)")
        if len(self.channels) != 2 or not self.hidden or min(*self.channels, *self.hidden) < 1:
            raise ConfigError(f"{where}: channels takes two positive widths, hidden one or more")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"{where}.kernel: an odd size, so frames keep their size")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"{where}: epochs, batch_size and lr must be positive")

    def architecture(self) -> dict[str, Any]:
        """What the checkpoint must match to be loaded (the rest only says how it was trained)."""
        return {"size": list(self.size), "channels": list(self.channels), "hidden": list(self.hidden)} | {
            "kernel": self.kernel
        }


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: the four gates from one convolution over [input ; hidden]."""

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMAutoencoder(nn.Module):
    def __init__(self, size: list[int], channels: list[int], hidden: list[int], kernel: int) -> None:
        super().__init__()
        self.grid = (size[0] // 4, size[1] // 4)
        c1, c2 = channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU()
        )
        widths = [c2, *hidden]
        self.encoder = nn.ModuleList(ConvLSTMCell(a, b, kernel) for a, b in zip(widths, hidden, strict=False))
        self.decoder = nn.ModuleList(
            ConvLSTMCell(a, b, kernel) for a, b in zip([hidden[0], *hidden], hidden, strict=False)
        )
        self.head = nn.Sequential(
            nn.ConvTranspose2d(hidden[-1], c1, 4, stride=2, padding=1), nn.ReLU(), nn.ConvTranspose2d(c1, 3, 4, 2, 1)
        )

    def start_at(self, brightness: float) -> None:
        """Start reconstructions at the training frames' mean pixel value instead of 0.5 grey: from grey,
        the first steps only learn the brightness, and short runs stopped there (measured)."""
        value = min(max(brightness, 1e-3), 1 - 1e-3)
        nn.init.constant_(self.head[-1].bias, float(np.log(value / (1 - value))))

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """frames (B, T, 3, H, W) in [0, 1] -> (last layer's hidden states (B, T, C, h, w), final states)."""
        batch, steps = frames.shape[:2]
        x = self.stem(frames.flatten(0, 1)).unflatten(0, (batch, steps))
        states = [self._zeros(batch, cell.hidden, x) for cell in self.encoder]
        outputs = []
        for t in range(steps):
            step = x[:, t]
            for layer, cell in enumerate(self.encoder):
                states[layer] = cell(step, states[layer])
                step = states[layer][0]
            outputs.append(step)
        return torch.stack(outputs, dim=1), states

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """The reconstruction of frames (B, T, 3, H, W), as logits of pixel values in [0, 1]."""
        _, states = self.encode(frames)
        steps = frames.shape[1]
        step_input = torch.zeros_like(states[0][0])
        rebuilt = []
        for _ in range(steps):
            step = step_input
            for layer, cell in enumerate(self.decoder):
                states[layer] = cell(step, states[layer])
                step = states[layer][0]
            rebuilt.append(self.head(step))
        return torch.stack(rebuilt[::-1], dim=1)  # built last frame first

    def _zeros(self, batch: int, channels: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = like.new_zeros(batch, channels, *self.grid)
        return zeros, zeros


def frames_to_input(frames: np.ndarray | torch.Tensor, size: tuple[int, int] | list[int]) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> float (T, 3, height, width) in [0, 1] (area resize: frames shrink)."""
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="area")
    return x


def require_frame_sequences(recipe: Recipe, path: str) -> Mapping[str, Any]:
    """The view of a decoded store that gives every video the same number of frames; refuses others."""
    view = recipe.view or {}
    if view.get("type") != "frames" or not view.get("num_frames"):
        raise ConfigError(
            f"{path}: the ConvLSTM autoencoder reads a frames view with num_frames (one sequence per video, "
            "the same length for all); point its `input` at one"
        )
    return view


def load_encoder(path: Path, config: ConvLSTMConfig, what: str) -> ConvLSTMAutoencoder:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "architecture" not in checkpoint:
        raise WeightsError(f"{what}: {path} is not a checkpoint written by `python -m extract train-encoder`")
    if checkpoint["architecture"] != config.architecture():
        raise WeightsError(
            f"{what}: {path} was trained as {checkpoint['architecture']}, params say {config.architecture()}: "
            "retrain it (dvc repro, or python -m extract train-encoder)"
        )
    model = ConvLSTMAutoencoder(**checkpoint["architecture"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


class ConvLSTMBackbone(Backbone):
    input_kind = "frames"

    def __init__(self, config: ConvLSTMConfig, device: torch.device) -> None:
        what = f"backbone {config.model}"
        if not config.weights:
            raise WeightsError(f"{what}: no trained encoder named; run `python -m extract train-encoder` first")
        files = local_files(config.weights, what)
        self.model = load_encoder(files[0], config, what).to(device)
        super().__init__(config, ResolvedWeights(config.weights, "path", files), config.hidden[-1], device)

    def preprocessing(self) -> dict[str, Any]:
        return {"resize": list(self.config.size), "interpolation": "area", "scale": "1/255"}

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_frame_sequences(recipe or Recipe(), self.config.input)

    def units(self, video: VideoInput) -> Units:
        # a video is one sequence: the ConvLSTM carries its state from frame to frame
        return Units([frames_to_input(video.rows, self.config.size)], video.timestamps)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            hidden, _ = self.model.encode(batch.to(self.device))
        return hidden.float().mean(dim=(-2, -1))  # (B, T, C)

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        return Rows(outputs[0], units.timestamps)


register_backbone(
    "convlstm_ae",
    ConvLSTMBackbone,
    config_cls=ConvLSTMConfig,
    about="ConvLSTM autoencoder trained on the dataset (train-encoder), one row per frame",
)
