"""A Hugging Face image processor's steps applied to uint8 tensors, without PIL.

The processors resize one PIL image at a time; a video's frames are one tensor already, so the
same steps (resize, centre crop, rescale, normalize, with the processor's own sizes, resampling,
mean and std) run on the whole batch at once. Resizing differs from PIL's in the last bits (torch's
antialiased kernels against PIL's), which the tests bound.
"""

from __future__ import annotations

from typing import Any

import torch

# PIL's resampling codes, as processors store them, and torchvision's names for the same filters
_RESAMPLING = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}


class TensorImageProcessor:
    """Built from an image processor's settings (`processor.to_dict()`)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        size = settings.get("size") or {}
        crop = settings.get("crop_size") if settings.get("do_center_crop", False) else None
        # CLIP and VideoMAE resize the short side, then crop the centre; SigLIP resizes to height x width
        self.resize = [size["shortest_edge"]] if "shortest_edge" in size else [size["height"], size["width"]]
        self.crop = [crop["height"], crop["width"]] if crop else None
        self.resampling = _RESAMPLING.get(int(settings.get("resample", 3)), "BICUBIC")
        self.scale = float(settings.get("rescale_factor", 1 / 255)) if settings.get("do_rescale", True) else 1.0
        normalize = settings.get("do_normalize", True)
        self.mean = torch.tensor(settings.get("image_mean", [0.0] * 3) if normalize else [0.0] * 3).view(3, 1, 1)
        self.std = torch.tensor(settings.get("image_std", [1.0] * 3) if normalize else [1.0] * 3).view(3, 1, 1)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, 3, h, w) float32, as the processor's pixel_values."""
        from torchvision.transforms.v2 import functional as TF

        mode = getattr(TF.InterpolationMode, self.resampling, TF.InterpolationMode.BICUBIC)
        resized = TF.resize(frames, self.resize, interpolation=mode, antialias=True)
        if self.crop:
            resized = TF.center_crop(resized, self.crop)
        mean, std = self.mean.to(resized.device), self.std.to(resized.device)  # frames decoded on a GPU
        return (resized.float() * self.scale - mean) / std

    def describe(self) -> dict[str, Any]:
        """The steps, for the store's recipe."""
        return {
            "resize": self.resize,
            "interpolation": f"{self.resampling.lower()}, antialiased",
            "center_crop": self.crop,
            "rescale": self.scale,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }
