"""VideoPrism (transformers) on clip views: per-frame rows of the video encoder, or clip rows in the
video-text space; `videoprism_text` is the text tower of the video-text models.

`videoprism` (default `google/videoprism-base-f16r288`, the video encoder alone) reads clips of the
checkpoint's 16 frames at 288 px, prepared as `VideoPrismProcessor` calls its video processor:
resized to the model's size (bicubic), scaled to [0, 1], not normalised.
- `rows: frame` (default) writes one row per frame, the encoder's last tokens averaged over space,
  at the frame's time: 16 rows a clip.
- `rows: tokens` writes every patch token of the video encoder, frame by frame, each frame's grid
  row by row (16 x 16 at 288 px: 4,096 rows a clip), at its frame's time; `token_pool: k` averages
  k x k patches, and the per-video column `token_grid` says each row's place, as for `vjepa2`.
- `rows: shared` writes one row per clip: the video-text (LVT) model's attention-pooled video
  embedding, L2-normalised, in the space of `videoprism_text` rows, for `kind: zero_shot` heads.
  It needs an LVT checkpoint (default `google/videoprism-lvt-base-f16r288`); an LVT checkpoint's
  video encoder also gives `rows: frame`.

`videoprism_text` is `clip_text` with the LVT default: `VideoPrismClipModel.get_text_features`,
L2-normalised. VideoPrism has no learned logit scale, so zero-shot scores are plain cosines.
Licence: the code Apache-2.0; the weights as their model card says (not checked offline here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from extract.backbones import register_backbone
from extract.backbones.clip import ClipTextBackbone, ClipTextConfig
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.tokens import check_rows
from extract.backbones.video_transformer import ClipTransformer, SharedSpaceConfig
from extract.backbones.weights import WeightsError
from extract.core.config import ConfigError

DEFAULT_CHECKPOINT = "google/videoprism-base-f16r288"
VIDEO_TEXT_CHECKPOINT = "google/videoprism-lvt-base-f16r288"


@dataclass(frozen=True)
class VideoPrismConfig(SharedSpaceConfig):
    token_pool: int = 1  # rows: tokens: average k x k neighbouring patches
    row_kinds: ClassVar[tuple[str, ...]] = ("frame", "shared", "tokens")
    in_recipe_when_set: ClassVar[tuple[str, ...]] = ("token_pool",)

    def validate(self, where: str) -> None:
        super().validate(where)
        check_rows(self.rows, self.row_kinds, self.token_pool, where)


class VideoPrismBackbone(ClipTransformer):
    def __init__(self, config: VideoPrismConfig, device: torch.device) -> None:
        from transformers import (
            AutoConfig,
            LlavaOnevisionVideoProcessor,
            VideoPrismClipModel,
            VideoPrismProcessor,
            VideoPrismVisionModel,
        )

        what = f"backbone {config.model}"
        shared = config.rows == "shared"
        folder, weights = huggingface_weights(
            config.weights or (VIDEO_TEXT_CHECKPOINT if shared else DEFAULT_CHECKPOINT), what
        )
        video_text = AutoConfig.from_pretrained(folder).model_type == "videoprism"
        if shared and not video_text:
            raise WeightsError(
                f"{what}: rows: shared needs a video-text checkpoint such as {VIDEO_TEXT_CHECKPOINT}, "
                f"but {folder} holds the video encoder alone: name an LVT checkpoint or set rows: frame"
            )
        # an LVT checkpoint's video encoder sits inside its video tower; loading it alone would leave it random
        self.model = load_complete(VideoPrismClipModel if video_text else VideoPrismVisionModel, folder, what)
        self.model = self.model.to(device)
        self.encoder = self.model.video_model.vision_model if video_text else self.model
        vision = self.encoder.config
        height, width = (
            (vision.image_size, vision.image_size) if isinstance(vision.image_size, int) else vision.image_size
        )
        # the processor's own call: its video processor's defaults, then the processor's video kwargs
        settings = {**LlavaOnevisionVideoProcessor().to_dict(), **VideoPrismProcessor.video_kwargs}
        self.pixels = TensorImageProcessor({**settings, "size": {"height": height, "width": width}})
        self.frames_per_clip = vision.num_frames
        self.frames_per_row = None if shared else 1
        if config.rows == "tokens":
            patch = vision.tubelet_size[1:]
            if height != width or patch[0] != patch[1]:
                raise ConfigError(f"{what}.rows: tokens needs a square patch grid; this checkpoint's is not")
            self.use_token_rows(vision.num_frames, height // patch[0], config.token_pool, what)
        super().__init__(config, weights, vision.hidden_size, device)

    def preprocessing(self) -> dict[str, Any]:
        extra = {"token_pool": self.config.token_pool} if self.config.rows == "tokens" else {}
        return {**self.pixels.describe(), "rows": self.config.rows, **extra}

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        with self.autocast():
            if self.config.rows == "shared":
                video = self.model.get_video_features(pixel_values_videos=batch).pooler_output
                return F.normalize(video.float().reshape(len(batch), -1), dim=-1)
            tokens = self.encoder(pixel_values_videos=batch).last_hidden_state  # (B, frames x patches, D)
        if self.config.rows == "tokens":
            return self.token_rows(tokens.float())  # (B, frames x cells, D)
        return tokens.float().reshape(len(batch), self.frames_per_clip, -1, tokens.shape[-1]).mean(dim=2)


class VideoPrismTextBackbone(ClipTextBackbone):
    default_checkpoint = VIDEO_TEXT_CHECKPOINT


register_backbone(
    "videoprism",
    VideoPrismBackbone,
    config_cls=VideoPrismConfig,
    about=f"VideoPrism (default {DEFAULT_CHECKPOINT}), a row per frame or patch, or per clip in the video-text space",
    text_tower="videoprism_text",
)
register_backbone(
    "videoprism_text",
    VideoPrismTextBackbone,
    config_cls=ClipTextConfig,
    about=f"VideoPrism's text tower (default {VIDEO_TEXT_CHECKPOINT}), L2-normalised, in videoprism's shared space",
    text_tower="videoprism_text",
)
