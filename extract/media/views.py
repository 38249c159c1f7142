"""Decoded views: what `decode` keeps of each video, and which frames that needs.

A view is a small frozen config read from `params.yaml` (`decode.views.<name>`); its `plan`
turns a probe into the frame indices to decode and the timestamp of each stored row.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from extract.core.config import ConfigError, build_config
from extract.media import RESIZE_MODES, SEEK_MODES, Probe, nearest_keyframe


def _span(meta: Probe, max_seconds: float | None) -> float:
    """Seconds of video to sample from, counted from the first frame."""
    return min(meta.duration, max_seconds) if max_seconds else meta.duration


def _frame_at(meta: Probe, seconds: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time (seconds from the first frame)."""
    rel = meta.frame_times - meta.frame_times[0]
    return np.clip(np.searchsorted(rel, seconds + 1e-9, side="right") - 1, 0, len(rel) - 1)


@dataclass(frozen=True)
class FramesView:
    """N frames spread uniformly over the first `max_seconds`, or every 1/fps seconds."""

    kind: ClassVar[str] = "frames"
    type: str = "frames"
    num_frames: int | None = 16
    fps: float | None = None  # set instead of num_frames for fixed-rate sampling
    max_seconds: float | None = 10.0  # null: the whole video
    max_frames: int = 600  # cap for fixed-rate sampling of long videos
    size: tuple[int, int] = (224, 224)  # height, width
    resize: str = "crop"
    storage: str = "raw"  # raw | jpeg: frames kept as JPEG (about a tenth of the bytes; see docs/views.md)
    jpeg_quality: int = 90
    seek: str = "auto"  # auto | exact | fast | keyframes: how exactly frames are found (see docs/views.md)
    max_shift: float = 0.1  # fast: seconds a frame may move to the nearest decoded reference frame

    def validate(self, where: str) -> None:
        if (self.num_frames is None) == (self.fps is None):
            raise ConfigError(f"{where}: set exactly one of num_frames and fps")
        _check_size(self, where)

    def plan(self, meta: Probe) -> tuple[np.ndarray, np.ndarray]:
        span = _span(meta, self.max_seconds)
        if self.fps:
            count = min(self.max_frames, max(1, math.ceil(span * self.fps - 1e-9)))
            seconds = np.arange(count) / self.fps
        else:
            seconds = (np.arange(self.num_frames) + 0.5) * span / self.num_frames
        index = _frame_at(meta, seconds)
        return index, self.timestamps(meta, index)

    def timestamps(self, meta: Probe, index: np.ndarray) -> np.ndarray:
        """Each row's time: its frame's, from the first frame."""
        return (meta.frame_times[index] - meta.frame_times[0]).astype(np.float32)

    def seek_for(self, meta: Probe, index: np.ndarray) -> str:
        """How this video's planned frames are found. `auto` is `keyframes` where each planned frame
        has its own keyframe within `max_shift` (frames planned farther apart than the keyframes are,
        and a shift the view allows): the cost of decoding those keyframes alone. Else it is `fast`
        where every two planned frames are at least 2 x `max_shift` apart, so that a frame moves
        inside its own window only and skipping frames saves decoding (10 frames over a 20 s TikTok);
        and `exact` where the sampling is denser, since there nearly every frame is decoded anyway.
        Frames picked by number (no presentation times) are decoded exactly whatever the mode."""
        if self.seek != "auto":
            return self.seek
        if not meta.seekable:
            return "exact"
        planned = np.unique(index)
        keys = nearest_keyframe(meta, planned)
        shift = np.abs(meta.frame_times[keys] - meta.frame_times[planned])
        if len(np.unique(keys)) == len(planned) and shift.max(initial=0.0) <= self.max_shift:
            return "keyframes"
        gaps = np.diff(meta.frame_times[planned])
        return "fast" if gaps.size == 0 or gaps.min() >= 2 * self.max_shift else "exact"

    def row_shape(self) -> tuple[int, ...]:
        return (*self.size, 3)


@dataclass(frozen=True)
class ClipsView:
    """K clips of L consecutive frames at `fps`, for video models; timestamps are clip centres.

    With `fps: null` each clip's L frames spread evenly over its share of the span (the DADS
    seed's "first 10 s, every total//16-th frame" is `num_clips: 1, clip_len: 16, fps: null`).
    With `crops: C` (resize: crop) each clip is cut C times along the frame's long side, as the
    papers' multi-view evaluations take their spatial views (3: start, centre, end) from frames
    scaled to cover `size`: a video's rows are its K segments x C crops, segment by segment.
    """

    kind: ClassVar[str] = "clips"
    type: str = "clips"
    num_clips: int = 1
    clip_len: int = 16
    fps: float | None = None
    max_seconds: float | None = 10.0
    size: tuple[int, int] = (112, 112)
    resize: str = "crop"
    storage: str = "raw"  # raw | jpeg
    jpeg_quality: int = 90
    seek: str = "exact"  # exact | fast (frames spread out, as with fps: null, gain most)
    max_shift: float = 0.1
    crops: int = 1  # spatial views of each clip along the long side (3: start, centre, end)

    def validate(self, where: str) -> None:
        if self.num_clips < 1 or self.clip_len < 1:
            raise ConfigError(f"{where}: num_clips and clip_len must be at least 1")
        if self.crops < 1 or (self.crops > 1 and self.resize != "crop"):
            raise ConfigError(f"{where}: crops: {self.crops}; at least 1, and more than 1 only with resize: crop")
        if self.seek == "keyframes":
            raise ConfigError(f"{where}: seek: keyframes would fill a clip with one frame; use exact or fast")
        if self.seek == "auto":
            raise ConfigError(f"{where}: seek: auto is for frames views (a clip's frames are consecutive); use exact")
        _check_size(self, where)

    def plan(self, meta: Probe) -> tuple[np.ndarray, np.ndarray]:
        span = _span(meta, self.max_seconds)
        share = span / self.num_clips
        steps = np.arange(self.clip_len)
        if self.fps:
            length = self.clip_len / self.fps
            centres = (np.arange(self.num_clips) + 0.5) * share
            starts = np.clip(centres - length / 2, 0.0, max(0.0, span - length))
            seconds = starts[:, None] + steps[None, :] / self.fps
        else:
            starts = np.arange(self.num_clips) * share
            seconds = starts[:, None] + (steps[None, :] + 0.5) * share / self.clip_len
        index = _frame_at(meta, seconds.ravel()).reshape(self.num_clips, self.clip_len)
        return index, self.timestamps(meta, index)

    def timestamps(self, meta: Probe, index: np.ndarray) -> np.ndarray:
        """Each clip's time: halfway between its first and last frame, from the first frame."""
        times = meta.frame_times[index] - meta.frame_times[0]
        return ((times[:, 0] + times[:, -1]) / 2).astype(np.float32)

    def seek_for(self, meta: Probe, index: np.ndarray) -> str:
        return self.seek  # consecutive frames: never auto

    def row_shape(self) -> tuple[int, ...]:
        return (self.clip_len, *self.size, 3)

    def cut_crops(self, clips: np.ndarray) -> np.ndarray:
        """(K, L, H', W', 3) clips scaled to cover `size` -> (K x crops, L, H, W, 3), each clip's crops
        in a row, evenly placed along the axis that exceeds `size` (both ends and the centre for 3)."""
        height, width = self.size
        excess_y, excess_x = clips.shape[2] - height, clips.shape[3] - width
        starts = np.linspace(0, max(excess_y, excess_x), self.crops).round().astype(int)
        cut = [
            clips[:, :, start : start + height, :width]
            if excess_y > excess_x
            else clips[:, :, :height, start : start + width]
            for start in starts
        ]
        if isinstance(clips, np.ndarray):
            return np.stack(cut, axis=1).reshape(-1, *clips.shape[1:2], height, width, 3)
        import torch  # clips decoded on a GPU (`extract.media.nvdec`) stay there

        return torch.stack(cut, dim=1).reshape(-1, *clips.shape[1:2], height, width, 3)


@dataclass(frozen=True)
class AudioView:
    """Mono audio resampled by ffmpeg; a video without audio gets zero samples and has_audio=false."""

    kind: ClassVar[str] = "audio"
    type: str = "audio"
    sample_rate: int = 16000
    max_seconds: float | None = None

    def validate(self, where: str) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"{where}: sample_rate must be positive")

    def row_shape(self) -> tuple[int, ...]:
        return ()


View = FramesView | ClipsView | AudioView
VIEW_TYPES: dict[str, type] = {cls.kind: cls for cls in (FramesView, ClipsView, AudioView)}


def _check_size(view: FramesView | ClipsView, where: str) -> None:
    if len(view.size) != 2 or min(view.size) < 1:
        raise ConfigError(f"{where}: size must be [height, width], got {list(view.size)}")
    if view.resize not in RESIZE_MODES:
        raise ConfigError(f"{where}: resize {view.resize!r} is not one of {list(RESIZE_MODES)}")
    if view.storage not in ("raw", "jpeg"):
        raise ConfigError(f"{where}: storage {view.storage!r} is not one of ['raw', 'jpeg']")
    if not 1 <= view.jpeg_quality <= 100:
        raise ConfigError(f"{where}: jpeg_quality must be 1..100, got {view.jpeg_quality}")
    if view.seek not in ("auto", *SEEK_MODES):
        raise ConfigError(f"{where}: seek {view.seek!r} is not one of {['auto', *SEEK_MODES]}")
    if view.max_shift < 0:
        raise ConfigError(f"{where}: max_shift must be 0 or more seconds, got {view.max_shift}")


def view_from_params(name: str, values: dict[str, Any]) -> View:
    where = f"params.yaml decode.views.{name}"
    kind = values.get("type")
    if kind not in VIEW_TYPES:
        raise ConfigError(f"{where}: type {kind!r} is not one of {sorted(VIEW_TYPES)}")
    return build_config(VIEW_TYPES[kind], values, where)


def view_config_json(view: View) -> str:
    """The canonical JSON of a view: the reuse key of its store.

    Seek settings appear only where they change the rows, so stores made before views had them
    (all exact) keep their key. `auto` keeps its rule (`max_shift`), not what each video resolved to.
    """
    values = dataclasses.asdict(view)
    if values.get("crops") == 1:  # single-crop stores keep the key they had before crops existed
        del values["crops"]
    if values.get("seek") not in ("fast", "auto"):
        values.pop("max_shift", None)
    if values.get("seek") == "exact":
        del values["seek"]
    return json.dumps({"view": values}, sort_keys=True)
