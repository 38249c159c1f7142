"""V-JEPA 2 (transformers `VJEPA2Model`) on clip views: the encoder's tokens averaged over space.

Default checkpoint `facebook/vjepa2-vitl-fpc64-256` (MIT): clips of the checkpoint's frames per
clip (64 here, 16 for the fpc16 ones) at 256 px. Its video processor's steps (resize the short side,
centre crop, rescale, ImageNet mean and std) run on tensors (`extract.backbones.pixels`). Only the
encoder runs (`skip_predictor`): the predictor is for pre-training.

`rows: tubelet` (default) writes one row per tubelet time step (2 frames), in time order, so a
64-frame clip gives 32 rows, each at the middle of its frames; `rows: clip` writes one row per clip,
the mean of all its tokens, at the clip's centre. `rows: tokens` writes every patch token, as V-JEPA
2's attentive probe reads them: per clip, time step by time step, each step's grid row by row (a
16-frame clip at 256 px: 8 steps x 16 x 16 = 2,048 rows), each at the middle of its tubelet's
frames; `token_pool: k` averages k x k neighbouring patches first (a 16 x 16 grid, k 2: 8 x 8), and
the per-video column `token_grid` records the grid as "clips x steps x height x width", so a row's
place is its index unravelled over it. `layers: [...]` takes the tokens of those encoder blocks
(1 is the first, the model's depth the last), each through the encoder's final norm as its own
output is, side by side in each row, as V-JEPA 2's multi-layer probe reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from extract.backbones import BackboneConfig, register_backbone
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.tokens import BlockOutputs, check_rows
from extract.backbones.video_transformer import ClipTransformer
from extract.core.config import ConfigError

DEFAULT_CHECKPOINT = "facebook/vjepa2-vitl-fpc64-256"
ROWS = ("tubelet", "clip", "tokens")


@dataclass(frozen=True)
class VJEPA2Config(BackboneConfig):
    rows: str = "tubelet"  # tubelet: one row per tubelet time step; clip: one mean row per clip; tokens: every patch
    token_pool: int = 1  # rows: tokens: average k x k neighbouring patches
    layers: tuple[int, ...] = ()  # encoder blocks whose tokens make each row, side by side (default: the output)
    in_recipe_when_set: ClassVar[tuple[str, ...]] = ("token_pool", "layers")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_rows(self.rows, ROWS, self.token_pool, where)
        if any(layer < 1 for layer in self.layers) or len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"{where}.layers: {list(self.layers)}; distinct block numbers from 1")


class VJEPA2Backbone(ClipTransformer):
    def __init__(self, config: VJEPA2Config, device: torch.device) -> None:
        from transformers import VJEPA2Model, VJEPA2VideoProcessor

        what = f"backbone {config.model}"
        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, what)
        self.pixels = TensorImageProcessor(VJEPA2VideoProcessor.from_pretrained(folder).to_dict())
        self.model = load_complete(VJEPA2Model, folder, what).to(device)
        model = self.model.config
        self.frames_per_clip = model.frames_per_clip
        self.frames_per_row = model.tubelet_size if config.rows in ("tubelet", "tokens") else None
        self.steps = model.frames_per_clip // model.tubelet_size
        if config.rows == "tokens":
            self.use_token_rows(self.steps, model.crop_size // model.patch_size, config.token_pool, what)
        depth = model.num_hidden_layers
        if any(layer > depth for layer in config.layers):
            raise ConfigError(f"{what}.layers: {list(config.layers)}; this checkpoint has blocks 1 to {depth}")
        self.taken = BlockOutputs(self.model.encoder.layer, config.layers)
        super().__init__(config, weights, model.hidden_size * max(1, len(config.layers)), device)

    def preprocessing(self) -> dict[str, Any]:
        extra = {"token_pool": self.config.token_pool} if self.config.rows == "tokens" else {}
        if self.config.layers:
            extra["layers"] = list(self.config.layers)
        return {**self.pixels.describe(), "rows": self.config.rows, **extra}

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            tokens = self.model(pixel_values_videos=batch.to(self.device), skip_predictor=True).last_hidden_state
            if self.config.layers:  # each block's tokens through the final norm, as the output's are
                tokens = torch.cat([self.model.encoder.layernorm(t) for t in self.taken.pop()], dim=-1)
        tokens = tokens.float()
        if self.config.rows == "clip":
            return tokens.mean(dim=1)
        if self.config.rows == "tokens":
            return self.token_rows(tokens)  # (B, steps x cells, D)
        return tokens.reshape(len(batch), self.steps, -1, tokens.shape[-1]).mean(dim=2)  # (B, steps, D)


register_backbone(
    "vjepa2",
    VJEPA2Backbone,
    config_cls=VJEPA2Config,
    about=f"transformers V-JEPA 2 encoder (default {DEFAULT_CHECKPOINT}), a row per tubelet step, clip or patch token",
)
