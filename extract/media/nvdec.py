"""Decoding on the GPU's NVDEC engines, through torchcodec's CUDA decoder, for a model on that GPU.

`DeviceDecoder.frames` is `MediaFile.frames` with the frames left on a torch device: the same plan
(`extract.media.plan`: the probe's frame indices, `exact`, `fast` or `keyframes`), handed to
torchcodec as its frame index (`custom_frame_mappings`), so it seeks to the same keyframes and gives
the same frames without scanning the file again; then turned upright (torchcodec applies the display
matrix), resized with bicubic filtering, cropped or padded as the FFmpeg filter graph does, on the
device. On the CPU device the same code decodes with FFmpeg's software decoder: at the file's size
its frames equal PyAV's byte for byte (tested), which is how the CPU suite covers this path.

Why torchcodec rather than PyNvVideoCodec (both wrap NVDEC): it takes the probe's frame index, so the
plans give the same frames on both decoders; it applies the display rotation; it reports when it fell
back to decoding on the CPU itself; and its CPU device runs this module's code in the CPU tests. It
needs FFmpeg's shared libraries (4 to 8) beside it, and a torch of its own release.

A file NVDEC cannot take (a codec or chroma format the engines lack, frames without presentation
times, a size beyond the engines' limits) is refused before any decoding (`NvdecRefused`), and the
caller decodes it on the CPU with that reason as its note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from extract.media.plan import targets
from extract.media.probe import Probe
from extract.media.pyav import COVER, RESIZE_MODES

if TYPE_CHECKING:
    import torch

    from extract.media.pyav import MediaFile

# What NVDEC decodes (NVIDIA's support matrix, Turing and later: A100, H100, H200, L4): per codec, the
# pixel formats and the largest coded width and height
_YUV420 = ("yuv420p", "yuvj420p", "nv12")
_HIGH_DEPTH = ("yuv420p10le", "yuv420p12le", "p010le", "p016le")
NVDEC_FORMATS: dict[str, tuple[tuple[str, ...], int]] = {
    "h264": (_YUV420, 4096),
    "hevc": (_YUV420 + _HIGH_DEPTH + ("yuv444p", "yuv444p10le", "yuv444p12le"), 8192),
    "av1": (_YUV420 + _HIGH_DEPTH[:1], 8192),
    "vp9": (_YUV420 + _HIGH_DEPTH, 8192),
    "vp8": (_YUV420, 4096),
    "mpeg1video": (_YUV420, 4080),
    "mpeg2video": (_YUV420, 4080),
    "mpeg4": (_YUV420, 2032),
    "vc1": (_YUV420, 2048),
}


class NvdecRefused(Exception):
    """A file NVDEC does not decode; the message is the reason, kept as the video's note."""


def unavailable(device: torch.device) -> str | None:
    """Why frames cannot be decoded on `device` by torchcodec (None: they can)."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU here (torch.cuda.is_available() is False)"
    try:
        import torchcodec.decoders  # noqa: F401 - loads FFmpeg's shared libraries
    except Exception as exc:  # noqa: BLE001 - not installed, or FFmpeg's libraries missing: the CPU decodes
        return f"torchcodec cannot load ({' '.join(str(exc).split())[:200]}); pip install torchcodec beside FFmpeg 4-8"
    return None


def refusal(source: MediaFile) -> str | None:
    """Why NVDEC would not decode this opened file (None: it would), from its stream alone."""
    context = source.video.codec_context
    codec, pixels = context.name, context.format.name if context.format else "unknown"
    if codec not in NVDEC_FORMATS:
        return f"NVDEC does not decode {codec}"
    formats, largest = NVDEC_FORMATS[codec]
    if pixels not in formats:
        return f"NVDEC does not decode {codec} in {pixels}"
    if max(context.width, context.height) > largest:
        return f"{context.width}x{context.height} is beyond NVDEC's {largest} for {codec}"
    if not source.probe().seekable:
        return "its frames have no presentation times, so they are decoded in order on the CPU"
    return None


def frame_mappings(meta: Probe) -> str:
    """The probe's frames as torchcodec's `custom_frame_mappings`: its frame i is the probe's frame i."""
    assert meta.pts is not None
    pts = meta.pts.astype(np.int64)
    step = int(np.median(np.diff(pts))) if len(pts) > 1 else 1
    durations = np.diff(pts, append=pts[-1] + step)
    keys = np.isin(meta.frame_times, meta.keyframe_times)
    frames = [
        {"pts": int(p), "duration": int(d), "key_frame": int(k)}
        for p, d, k in zip(pts.tolist(), durations.tolist(), keys.tolist(), strict=True)
    ]
    return json.dumps({"frames": frames})


class DeviceDecoder:
    """Frames decoded by torchcodec on `device` (a CUDA device: NVDEC), kept there."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def describe(self) -> str:
        """What decodes, as provenance."""
        import torchcodec

        engine = "NVDEC" if self.device.type == "cuda" else "FFmpeg's software decoder"
        return f"{engine} through torchcodec {torchcodec.__version__} on {self.device}"

    def frames(
        self,
        source: MediaFile,
        wanted: np.ndarray,
        size: tuple[int, int],
        resize: str,
        seek: str = "exact",
        max_shift: float = 0.1,
    ) -> tuple[torch.Tensor, np.ndarray, str]:
        """`MediaFile.frames`, as a uint8 (N, H, W, 3) tensor on the device, and what decoded them:
        this decoder, or torchcodec's own CPU fallback where it took one. `NvdecRefused` where NVDEC
        would not take the file."""
        import torch
        from torchcodec.decoders import VideoDecoder

        reason = refusal(source)
        if reason:
            raise NvdecRefused(reason)
        meta = source.probe()
        found = targets(meta, wanted, seek, max_shift)
        order = np.unique(found)
        if not len(order):
            return torch.zeros((0, *size, 3), dtype=torch.uint8, device=self.device), found, self.describe()
        with own_nvdec(self.device):
            decoder = VideoDecoder(
                str(source.path),
                stream_index=source.video.index,
                device=str(self.device),
                custom_frame_mappings=frame_mappings(meta),
            )
        if hasattr(decoder.metadata, "rotation"):  # what `info` reports: no frame of it decoded on the CPU
            source.note_rotation(decoder.metadata.rotation or 0.0)
        decoded = decoder.get_frames_at(order.tolist()).data  # (N, 3, H, W) uint8, upright
        source.check_time()
        frames = resized(decoded, size, resize)
        picked = torch.as_tensor(np.searchsorted(order, found), device=frames.device)
        by = self.describe()
        fallback = getattr(decoder, "cpu_fallback", None)  # torchcodec 0.11 and later say so
        if fallback:
            by = f"{by}, which decoded it on the CPU: {' '.join(str(fallback).split())}"
        return frames[picked].permute(0, 2, 3, 1).contiguous(), found, by


@contextmanager
def own_nvdec(device: torch.device) -> Iterator[None]:
    """Decoders made in the block on a CUDA device use torchcodec's own NVDEC decoder, not FFmpeg's
    (which needs an FFmpeg built with CUDA): named "nvdec" since it became the default, "beta" before
    (torchcodec 0.11 to 0.16, beside a torch 2.11 to 2.14)."""
    if device.type != "cuda":
        yield
        return
    from torchcodec.decoders import set_cuda_backend

    for name in ("nvdec", "beta"):
        chosen = set_cuda_backend(name)
        try:
            chosen.__enter__()
        except ValueError:  # not a backend of this torchcodec: the older name
            continue
        try:
            yield
        finally:
            chosen.__exit__(None, None, None)
        return
    yield  # neither: its default


def resized(frames: torch.Tensor, size: tuple[int, int], resize: str) -> torch.Tensor:
    """(N, 3, h, w) uint8 -> (N, 3, H, W) uint8 for size (H, W), as the FFmpeg graph of
    `extract.media.pyav` resizes: bicubic, `crop` filling and cutting the centre, `cover` filling,
    `pad` letterboxing in black, `stretch` distorting."""
    import torch
    import torch.nn.functional as F

    if resize not in (*RESIZE_MODES, COVER):
        raise ValueError(f"unknown resize mode {resize!r}; expected one of {', '.join(RESIZE_MODES)}")
    height, width = size
    in_h, in_w = frames.shape[-2:]
    scaled = (height, width)
    if resize in ("crop", COVER, "pad"):
        # ffmpeg's force_original_aspect_ratio: the other side from the aspect ratio, rounded
        wide, tall = _rounded(height * in_w / in_h), _rounded(width * in_h / in_w)
        pick = max if resize != "pad" else min
        scaled = (pick(tall, height), pick(wide, width))
    if tuple(scaled) != (in_h, in_w):
        out = F.interpolate(frames.float(), size=scaled, mode="bicubic", antialias=True, align_corners=False)
        frames = out.round_().clamp_(0, 255).to(torch.uint8)
    if resize == "crop":
        top, left = (scaled[0] - height + 1) // 2, (scaled[1] - width + 1) // 2  # ffmpeg's crop rounds half up
        frames = frames[..., top : top + height, left : left + width]
    elif resize == "pad":
        top, left = (height - scaled[0]) // 2, (width - scaled[1]) // 2
        frames = F.pad(frames, (left, width - scaled[1] - left, top, height - scaled[0] - top))
    return frames


def _rounded(value: float) -> int:
    return int(math.floor(value + 0.5))
