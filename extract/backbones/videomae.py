"""VideoMAE (transformers) on clip views: the mean-pooled encoder output, one row per clip.

Default checkpoint MCG-NJU/videomae-base-finetuned-kinetics; any VideoMAE checkpoint by Hugging
Face name or local folder (the TikTokActions seed pretrained a VideoMAE-v2 ViT-B). Its processor's
steps run on tensors (`extract.backbones.pixels`), a clip at a time instead of a PIL image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from extract.backbones import BackboneConfig, register_backbone
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights
from extract.backbones.tokens import check_rows
from extract.backbones.video_transformer import ClipTransformer

DEFAULT_CHECKPOINT = "MCG-NJU/videomae-base-finetuned-kinetics"
ROWS = ("clip", "tokens")


@dataclass(frozen=True)
class VideoMAEConfig(BackboneConfig):
    rows: str = "clip"  # clip: the mean of a clip's tokens; tokens: every patch token
    token_pool: int = 1  # rows: tokens: average k x k neighbouring patches
    in_recipe_when_set: ClassVar[tuple[str, ...]] = ("rows", "token_pool")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_rows(self.rows, ROWS, self.token_pool, where)


class VideoMAEBackbone(ClipTransformer):
    def __init__(self, config: VideoMAEConfig, device: torch.device) -> None:
        from transformers import VideoMAEImageProcessor, VideoMAEModel

        what = f"backbone {config.model}"
        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, what)
        self.pixels = TensorImageProcessor(VideoMAEImageProcessor.from_pretrained(folder).to_dict())
        self.model = VideoMAEModel.from_pretrained(folder).eval().to(device)
        model = self.model.config
        self.frames_per_clip = model.num_frames
        self.frames_per_row = model.tubelet_size if config.rows == "tokens" else None
        if config.rows == "tokens":
            steps, side = model.num_frames // model.tubelet_size, model.image_size // model.patch_size
            self.use_token_rows(steps, side, config.token_pool, what)
        super().__init__(config, weights, model.hidden_size, device)

    def preprocessing(self) -> dict[str, Any]:
        if self.config.rows == "tokens":
            return {**self.pixels.describe(), "rows": "tokens", "token_pool": self.config.token_pool}
        return self.pixels.describe()

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            hidden = self.model(pixel_values=batch.to(self.device)).last_hidden_state
        hidden = hidden.float()
        return self.token_rows(hidden) if self.config.rows == "tokens" else hidden.mean(dim=1)


register_backbone(
    "videomae",
    VideoMAEBackbone,
    config_cls=VideoMAEConfig,
    about=f"transformers VideoMAE (default {DEFAULT_CHECKPOINT}), mean-pooled per clip, or every patch token",
)
