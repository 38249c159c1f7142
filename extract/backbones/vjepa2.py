"""V-JEPA 2 (transformers `VJEPA2Model`) on clip views: the encoder's tokens averaged over space.

Default checkpoint `facebook/vjepa2-vitl-fpc64-256` (MIT): clips of the checkpoint's frames per
clip (64 here, 16 for the fpc16 ones) at 256 px. Its video processor's steps (resize the short side,
centre crop, rescale, ImageNet mean and std) run on tensors (`extract.backbones.pixels`). Only the
encoder runs (`skip_predictor`): the predictor is for pre-training.

`rows: tubelet` (default) writes one row per tubelet time step (2 frames), in time order, so a
64-frame clip gives 32 rows, each at the middle of its frames; `rows: clip` writes one row per clip,
the mean of all its tokens, at the clip's centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from extract.backbones import Backbone, BackboneConfig, Rows, Units, VideoInput, register_backbone, require_clip_len
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights
from extract.config import ConfigError
from extract.recipe import Recipe

DEFAULT_CHECKPOINT = "facebook/vjepa2-vitl-fpc64-256"
ROWS = ("tubelet", "clip")


@dataclass(frozen=True)
class VJEPA2Config(BackboneConfig):
    rows: str = "tubelet"  # tubelet: one row per tubelet time step; clip: one mean row per clip

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.rows not in ROWS:
            raise ConfigError(f"{where}.rows: {self.rows!r} is not one of {list(ROWS)}")


class VJEPA2Backbone(Backbone):
    input_kind = "clips"

    def __init__(self, config: VJEPA2Config, device: torch.device) -> None:
        from transformers import VJEPA2Model, VJEPA2VideoProcessor

        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, f"backbone {config.model}")
        self.pixels = TensorImageProcessor(VJEPA2VideoProcessor.from_pretrained(folder).to_dict())
        self.model = VJEPA2Model.from_pretrained(folder).eval().to(device)
        self.frame_step_s: float | None = None  # seconds between a clip's frames, from the view's fps
        super().__init__(config, weights, self.model.config.hidden_size, device)

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_clip_len(self, row_shape, self.model.config.frames_per_clip)
        fps = ((recipe.view if recipe else None) or {}).get("fps")
        self.frame_step_s = 1.0 / fps if fps else None

    def preprocessing(self) -> dict[str, Any]:
        return {**self.pixels.describe(), "rows": self.config.rows}

    def units(self, video: VideoInput) -> Units:
        clips = torch.from_numpy(np.ascontiguousarray(video.rows)).permute(0, 1, 4, 2, 3)  # (K, L, 3, H, W) uint8
        return Units([self.pixels(clip) for clip in clips], self._times(np.asarray(video.timestamps, np.float64)))

    def _times(self, centres: np.ndarray) -> np.ndarray:
        """Each row's time: the clip's centre, or the middle of each tubelet's frames."""
        if self.config.rows == "clip" or not len(centres):
            return centres.astype(np.float32)
        frames, tubelet = self.model.config.frames_per_clip, self.model.config.tubelet_size
        # with fps: null a view spreads a clip's frames over its share of the video: 2 x the first centre
        step = self.frame_step_s or 2 * float(centres[0]) / frames
        offsets = ((np.arange(frames // tubelet) + 0.5) * tubelet - frames / 2) * step
        return (centres[:, None] + offsets[None, :]).ravel().astype(np.float32)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            tokens = self.model(pixel_values_videos=batch.to(self.device), skip_predictor=True).last_hidden_state
        tokens = tokens.float()
        if self.config.rows == "clip":
            return tokens.mean(dim=1)
        steps = self.model.config.frames_per_clip // self.model.config.tubelet_size
        return tokens.reshape(len(batch), steps, -1, tokens.shape[-1]).mean(dim=2)  # (B, steps, D)

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        if not outputs:
            return Rows(np.zeros((0, self.dim), np.float32), units.timestamps)
        return Rows(np.concatenate([np.reshape(out, (-1, self.dim)) for out in outputs]), units.timestamps)


register_backbone(
    "vjepa2",
    VJEPA2Backbone,
    config_cls=VJEPA2Config,
    about=f"transformers V-JEPA 2 encoder (default {DEFAULT_CHECKPOINT}), one row per tubelet step or per clip",
)
