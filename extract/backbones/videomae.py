"""VideoMAE (transformers) on clip views: the mean-pooled encoder output, one row per clip.

Default checkpoint MCG-NJU/videomae-base-finetuned-kinetics; any VideoMAE checkpoint by Hugging
Face name or local folder (the TikTokActions seed pretrained a VideoMAE-v2 ViT-B). Its processor's
steps run on tensors (`extract.backbones.pixels`), a clip at a time instead of a PIL image at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from extract.backbones import Backbone, BackboneConfig, Units, VideoInput, register_backbone, require_clip_len
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights
from extract.core.recipe import Recipe

DEFAULT_CHECKPOINT = "MCG-NJU/videomae-base-finetuned-kinetics"


class VideoMAEBackbone(Backbone):
    input_kind = "clips"

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        from transformers import VideoMAEImageProcessor, VideoMAEModel

        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, f"backbone {config.model}")
        self.pixels = TensorImageProcessor(VideoMAEImageProcessor.from_pretrained(folder).to_dict())
        self.model = VideoMAEModel.from_pretrained(folder).eval().to(device)
        super().__init__(config, weights, self.model.config.hidden_size, device)

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_clip_len(self, row_shape, self.model.config.num_frames)

    def preprocessing(self) -> dict[str, Any]:
        return self.pixels.describe()

    def units(self, video: VideoInput) -> Units:
        clips = torch.from_numpy(np.ascontiguousarray(video.rows)).permute(0, 1, 4, 2, 3)  # (K, L, 3, H, W) uint8
        return Units([self.pixels(clip) for clip in clips], video.timestamps)  # each (L, 3, h, w)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            hidden = self.model(pixel_values=batch.to(self.device)).last_hidden_state
        return hidden.float().mean(dim=1)


register_backbone(
    "videomae",
    VideoMAEBackbone,
    config_cls=BackboneConfig,
    about=f"transformers VideoMAE (default {DEFAULT_CHECKPOINT}), mean-pooled, per clip",
)
