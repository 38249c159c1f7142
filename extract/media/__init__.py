"""Media: what a file holds, and decoding only the frames and audio a view needs.

Files are read in this process by FFmpeg's own libraries through PyAV (`pyav.MediaFile`): the probe
is one pass over the video's packets (`probe`), which frames to decode is decided from it alone
(`plan`), and the decoder skips, packet by packet, every frame that neither a view asked for nor an
asked-for frame references (`bitstream` says which). Measured against the ffmpeg and ffprobe
commands this replaced, and against torchcodec, in docs/benchmarks.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extract.core.settings import Settings
from extract.media.plan import SEEK_MODES, nearest_keyframe, seek_segments
from extract.media.probe import MediaError, Probe
from extract.media.pyav import COVER, RESIZE_MODES, MediaFile, decoder_version

FFMPEG_TIMEOUT_S = Settings.ffmpeg_timeout_s  # a video's decoding time limit where the caller gives none

__all__ = [
    "FFMPEG_TIMEOUT_S",
    "COVER",
    "RESIZE_MODES",
    "SEEK_MODES",
    "MediaError",
    "MediaFile",
    "Probe",
    "decode_audio",
    "decode_frames",
    "decoder_version",
    "nearest_keyframe",
    "probe",
    "seek_segments",
]


def probe(path: str | Path, timeout: float = FFMPEG_TIMEOUT_S) -> Probe:
    """What a file holds (see `Probe`), read from its packets."""
    with MediaFile(path, timeout) as media:
        return media.probe()


def decode_frames(
    path: str | Path,
    meta: Probe,
    wanted: np.ndarray,
    size: tuple[int, int],
    resize: str,
    threads: int = 1,
    seek: str = "exact",
    max_shift: float = 0.1,
    timeout: float = FFMPEG_TIMEOUT_S,
) -> tuple[np.ndarray, np.ndarray]:
    """`MediaFile.frames` of one file whose probe is `meta`: the frames and the index each one is."""
    with MediaFile(path, timeout, threads, meta) as media:
        return media.frames(wanted, size, resize, seek, max_shift)


def decode_audio(
    path: str | Path, sample_rate: int, max_seconds: float | None, timeout: float = FFMPEG_TIMEOUT_S
) -> np.ndarray:
    """`MediaFile.audio` of one file: its first audio stream, mono float32 at `sample_rate`."""
    with MediaFile(path, timeout) as media:
        return media.audio(sample_rate, max_seconds)
