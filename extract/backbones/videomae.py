"""VideoMAE (transformers) on clip views: the mean-pooled encoder output, one row per clip.

Default checkpoint MCG-NJU/videomae-base-finetuned-kinetics; any VideoMAE checkpoint by Hugging
Face name or local folder (the TikTokActions seed pretrained a VideoMAE-v2 ViT-B).
"""

from __future__ import annotations

from typing import Any

import torch

from extract.backbones import Backbone, BackboneConfig, Units, VideoInput, register_backbone
from extract.backbones.text import huggingface_weights
from extract.views import ConfigError

DEFAULT_CHECKPOINT = "MCG-NJU/videomae-base-finetuned-kinetics"


class VideoMAEBackbone(Backbone):
    input_kind = "clips"

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        from transformers import VideoMAEImageProcessor, VideoMAEModel

        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, f"backbone {config.model}")
        self.processor = VideoMAEImageProcessor.from_pretrained(folder)
        self.model = VideoMAEModel.from_pretrained(folder).eval().to(device)
        super().__init__(config, weights, self.model.config.hidden_size, device)

    def check_input(self, row_shape: tuple[int, ...], source_config: dict | None = None) -> None:
        frames = self.model.config.num_frames
        if row_shape[0] != frames:
            raise ConfigError(
                f"{self.config.model} takes clips of {frames} frames but {self.config.input} has "
                f"{row_shape[0]}: set clip_len: {frames} in its decode view"
            )

    def preprocessing(self) -> dict[str, Any]:
        return {"processor": self.processor.to_dict()}

    def units(self, video: VideoInput) -> Units:
        pixels = [self.processor(list(clip), return_tensors="pt")["pixel_values"][0] for clip in video.rows]
        return Units(pixels, video.timestamps)  # each (L, 3, h, w)

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
