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

import torch

from extract.backbones import BackboneConfig, register_backbone
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.video_transformer import ClipTransformer
from extract.core.config import ConfigError

DEFAULT_CHECKPOINT = "facebook/vjepa2-vitl-fpc64-256"
ROWS = ("tubelet", "clip")


@dataclass(frozen=True)
class VJEPA2Config(BackboneConfig):
    rows: str = "tubelet"  # tubelet: one row per tubelet time step; clip: one mean row per clip

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.rows not in ROWS:
            raise ConfigError(f"{where}.rows: {self.rows!r} is not one of {list(ROWS)}")


class VJEPA2Backbone(ClipTransformer):
    def __init__(self, config: VJEPA2Config, device: torch.device) -> None:
        from transformers import VJEPA2Model, VJEPA2VideoProcessor

        what = f"backbone {config.model}"
        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, what)
        self.pixels = TensorImageProcessor(VJEPA2VideoProcessor.from_pretrained(folder).to_dict())
        self.model = load_complete(VJEPA2Model, folder, what).to(device)
        self.frames_per_clip = self.model.config.frames_per_clip
        self.frames_per_row = self.model.config.tubelet_size if config.rows == "tubelet" else None
        super().__init__(config, weights, self.model.config.hidden_size, device)

    def preprocessing(self) -> dict[str, Any]:
        return {**self.pixels.describe(), "rows": self.config.rows}

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            tokens = self.model(pixel_values_videos=batch.to(self.device), skip_predictor=True).last_hidden_state
        tokens = tokens.float()
        if self.config.rows == "clip":
            return tokens.mean(dim=1)
        steps = self.model.config.frames_per_clip // self.model.config.tubelet_size
        return tokens.reshape(len(batch), steps, -1, tokens.shape[-1]).mean(dim=2)  # (B, steps, D)


register_backbone(
    "vjepa2",
    VJEPA2Backbone,
    config_cls=VJEPA2Config,
    about=f"transformers V-JEPA 2 encoder (default {DEFAULT_CHECKPOINT}), one row per tubelet step or per clip",
)
