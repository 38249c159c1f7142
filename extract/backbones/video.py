"""torchvision Kinetics-400 video models on clip views: the vector before the head, one row per clip.

The DADS 7202 seed used mvit_v2_s, swin3d_t and r2plus1d_18 on 16 frames of the first 10 s.
"""

from __future__ import annotations

from extract.backbones import BackboneConfig, Units, VideoInput, register_backbone
from extract.backbones.image import TorchvisionBackbone
from extract.core.config import ConfigError
from extract.core.recipe import Recipe

# Frames per clip each model accepts: (minimum, whether exactly that). MViT's temporal position
# embedding fixes 16 and S3D needs 14; the others accept any length (all were trained on 16).
CLIP_FRAMES = {
    "r2plus1d_18": (1, False),
    "r3d_18": (1, False),
    "mc3_18": (1, False),
    "s3d": (14, False),
    "mvit_v1_b": (16, True),
    "mvit_v2_s": (16, True),
    "swin3d_t": (1, False),
    "swin3d_s": (1, False),
    "swin3d_b": (1, False),
}


class VideoBackbone(TorchvisionBackbone):
    input_kind = "clips"

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        frames, exact = CLIP_FRAMES[self.config.model]
        clip_len = row_shape[0]
        if clip_len < frames or (exact and clip_len != frames):
            need = f"exactly {frames}" if exact else f"at least {frames}"
            raise ConfigError(
                f"{self.config.model} needs {need} frames per clip but {self.config.input} has {clip_len}: "
                f"set clip_len: {frames} in its decode view"
            )

    def units(self, video: VideoInput) -> Units:
        clips = video.tensor().permute(0, 1, 4, 2, 3)  # (K, L, 3, H, W)
        return Units([self.transforms(clip) for clip in clips], video.timestamps)  # each (3, L, h, w)


for _name in CLIP_FRAMES:
    register_backbone(
        _name, VideoBackbone, config_cls=BackboneConfig, about=f"torchvision {_name}, Kinetics-400, per clip"
    )
