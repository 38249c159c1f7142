"""What a file holds, read from its packets without decoding them: the time of every video frame, the
keyframes, and which frames stay exact when a decoder skips others (see `bitstream`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from extract.core.errors import UserError
from extract.media.bitstream import SKIP_BIDIR, SKIP_NONREF, SKIP_NOTHING, NalReader, x264_skips_b_frames

if TYPE_CHECKING:
    from collections.abc import Callable

    import av


class MediaError(UserError):
    """A video that cannot be used; the message is a one-line reason stored with the failure."""


@dataclass(frozen=True)
class Probe:
    """The frames of one file's video stream. Times are stream seconds rounded to the microsecond (as
    ffprobe prints them, so rows made before reelfeat read files in-process keep their times)."""

    duration: float  # seconds of media from the first video frame (or the file's start)
    has_video: bool
    has_audio: bool
    fps: float
    frame_times: np.ndarray  # (M,) sorted presentation times of every video frame
    keyframe_times: np.ndarray  # (K,) sorted presentation times of the keyframes
    # False when packets carry decode times only (H.264 with B-frames in AVI, raw streams): the
    # decoder then guesses frame times, so frames are picked by their number in presentation order
    # (frame i is at frame_times[i]: the decode-time grid holds the same times, in order).
    seekable: bool = True
    # FFmpeg's skip_frame level a decoder may use for frames nobody asked for, every frame it keeps
    # staying exact (see `bitstream`); and the frames it still decodes at that level, which `fast`
    # seeking moves to (None: not known, every frame counts)
    skip: str = SKIP_NONREF
    chain: np.ndarray | None = None  # (M,) bool
    pts: np.ndarray | None = None  # (M,) int64 presentation timestamps, in `time_base`, where seekable
    time_base: Fraction | None = None

    def in_chain(self, index: np.ndarray) -> np.ndarray:
        return np.ones(len(index), bool) if self.chain is None else self.chain[index]


def read_probe(container: av.container.InputContainer, check_time: Callable[[], None]) -> Probe:
    """The probe of an open file: one pass over its video packets (no decoding)."""
    video = video_stream(container)
    has_audio = bool(container.streams.audio)
    if video is None:
        if not has_audio:
            raise MediaError("no video or audio stream (not a media file?)")
        duration = (container.duration or 0) / 1e6  # AV_TIME_BASE
        empty = np.zeros(0)
        return Probe(duration, False, True, 0.0, empty, empty)

    codec = video.codec_context.name
    reader = NalReader(codec, video.codec_context.extradata) if codec in ("h264", "hevc") else None
    pts, dts, keys, kinds = [], [], [], []
    read = 0
    first: bytes | None = None
    for packet in container.demux(video):
        check_time()
        if packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        read += 1
        if first is None:
            first = bytes(packet)
        if packet.is_discard:  # hidden by an edit list: decoded for its references, never shown
            continue
        pts.append(packet.pts)
        dts.append(packet.dts)
        keys.append(packet.is_keyframe)
        kinds.append(reader.kind(packet) if reader else None)
    if not pts:
        raise MediaError("video stream has no frames")
    declared = video.frames  # from the container's index, where it has one
    # One frame of slack: AVI headers can count a frame the muxer then dropped (seen from ffmpeg's own
    # AVI muxer with -shortest); the file plays and every packet is there.
    if read < declared - 1:
        raise MediaError(f"truncated video: its index lists {declared} frames but only {read} can be read")

    rising = all(a is not None and b is not None and a <= b for a, b in zip(pts, pts[1:], strict=False))
    if video.codec_context.has_b_frames and rising:
        # Frames are reordered, yet the times rise in decoding order: FFmpeg made them up from the
        # decode times (AVI, which stores none), so they say nothing about the order frames are shown
        pts = [None] * len(pts)
    seekable = all(p is not None for p in pts)
    # Where a packet has no presentation time its decode time stands in: one per frame, on the same
    # grid, which is all a sorted list of frame times needs.
    stamps = np.array(
        [p if p is not None else (d if d is not None else -(2**62)) for p, d in zip(pts, dts, strict=True)]
    )
    keep = stamps != -(2**62)
    stamps, order = np.unique(stamps[keep], return_index=True)
    time_base = video.time_base
    frame_times = _as_printed(stamps * float(time_base))
    key_flags = np.asarray(keys)[keep][order]
    keyframe_times = frame_times[key_flags] if key_flags.any() else frame_times[:1]
    skip, chain = _skippable(reader, [kinds[i] for i in np.flatnonzero(keep)[order]], first or b"")

    fps = float(video.average_rate or video.base_rate or 0)
    if not fps and len(frame_times) > 1:
        fps = (len(frame_times) - 1) / float(frame_times[-1] - frame_times[0])
    last_frame_end = float(frame_times[-1]) + (1.0 / fps if fps and math.isfinite(fps) else 0.0)
    return Probe(
        duration=last_frame_end - float(frame_times[0]),
        has_video=True,
        has_audio=has_audio,
        fps=fps,
        frame_times=frame_times,
        keyframe_times=keyframe_times,
        seekable=seekable,
        skip=skip,
        chain=chain,
        pts=stamps.astype(np.int64) if seekable else None,
        time_base=time_base,
    )


_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC: cover art, not the video


def video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The file's first video stream that is not cover art; None where it has none."""
    return next((s for s in container.streams.video if not s.disposition & _ATTACHED_PIC), None)


def _as_printed(seconds: np.ndarray) -> np.ndarray:
    """Seconds rounded to the microsecond as C's printf rounds them (ffprobe's `%f`)."""
    return np.array([float(f"{t:.6f}") for t in seconds.tolist()], np.float64)


def _skippable(reader: NalReader | None, kinds: list, first_packet: bytes) -> tuple[str, np.ndarray | None]:
    """(skip level, frames decoded at that level) for a stream, frame by frame in presentation order."""
    if reader is None:  # not read here: FFmpeg's own non-reference frames, no frame known to stay
        return SKIP_NONREF, None
    known = [k for k in kinds if k is not None]
    if len(known) < len(kinds):  # a packet whose picture could not be read: skip nothing
        return SKIP_NOTHING, None
    reference = np.array([k.reference for k in kinds], bool)
    if reader.codec == "h264":
        if x264_skips_b_frames(first_packet):
            return SKIP_BIDIR, np.array([k.slice in ("I", "P") for k in kinds], bool)
        return SKIP_NONREF, reference
    # HEVC: a sub-layer non-reference picture below the top sub-layer may still be referenced
    sublayers = np.array([k.sublayer for k in kinds])
    if (~reference & (sublayers < sublayers.max())).any():
        return SKIP_NOTHING, None
    return SKIP_NONREF, reference
