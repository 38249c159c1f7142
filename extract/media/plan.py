"""Which frames a view gets for the frames it wants, and how to decode them: decided from the probe
alone, before any decoding, so that every decoder gives the same frames.

Seek modes (see SEEK_MODES): `exact` gives the wanted frames themselves; `fast` gives, for each
wanted frame, the nearest frame a decoder decodes anyway while skipping what it may (see
`Probe.skip`), within `max_shift` seconds, else the wanted frame itself; `keyframes` gives the
keyframe nearest in time. Every frame given is then decoded exactly, so a frame `fast` or
`keyframes` gives equals the frame `exact` gives at its timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extract.media.bitstream import SKIP_BIDIR, SKIP_NONREF
from extract.media.probe import Probe

SEEK_MODES = ("exact", "fast", "keyframes")
SKIP_ALL = "ALL"  # every frame but the ones asked for: runs of keyframes, which need no other frame


def targets(meta: Probe, wanted: np.ndarray, seek: str, max_shift: float) -> np.ndarray:
    """For each wanted frame index, the index of the frame given for it."""
    if seek not in SEEK_MODES:
        raise ValueError(f"unknown seek mode {seek!r}; expected one of {', '.join(SEEK_MODES)}")
    wanted = np.asarray(wanted, dtype=np.int64)
    if not meta.seekable or not len(wanted):  # frames picked by number are decoded in order, exactly
        return wanted
    if seek == "keyframes":
        return nearest_keyframe(meta, wanted)
    if seek == "fast":
        return _nearest_in_chain(meta, wanted, max_shift)
    return wanted


def nearest_keyframe(meta: Probe, wanted: np.ndarray) -> np.ndarray:
    """For each wanted frame index, the index of the keyframe nearest to it in time."""
    key_index = np.unique(np.clip(np.searchsorted(meta.frame_times, meta.keyframe_times), 0, len(meta.frame_times) - 1))
    key_times = meta.frame_times[key_index]
    after = np.clip(np.searchsorted(key_times, meta.frame_times[wanted]), 0, len(key_times) - 1)
    before = np.clip(after - 1, 0, len(key_times) - 1)
    target = meta.frame_times[wanted]
    closer_before = np.abs(target - key_times[before]) <= np.abs(key_times[after] - target)
    return key_index[np.where(closer_before, before, after)]


def _nearest_in_chain(meta: Probe, wanted: np.ndarray, max_shift: float) -> np.ndarray:
    """Each wanted frame moved to the nearest frame of the decoder's chain (`Probe.chain`) within a
    window of +-max_shift seconds, cut halfway to the neighbouring wanted frames (so two never swap
    or merge) and never reaching back past the keyframe the frame depends on (which would decode the
    previous group of pictures); the wanted frame itself where the window holds none."""
    times = meta.frame_times
    order = np.unique(wanted)
    target = times[order]
    key_before = meta.keyframe_times[np.clip(np.searchsorted(meta.keyframe_times, target, "right") - 1, 0, None)]
    halfway = (target[1:] + target[:-1]) / 2
    low = np.maximum.reduce([target - max_shift, key_before - 1e-6, np.concatenate([[-np.inf], halfway])])
    high = np.minimum(target + max_shift, np.concatenate([halfway, [np.inf]]))
    given = order.copy()
    for k, (first, last) in enumerate(zip(np.searchsorted(times, low), np.searchsorted(times, high), strict=True)):
        candidates = np.arange(first, max(first, last))
        candidates = candidates[meta.in_chain(candidates)]
        if len(candidates):
            given[k] = candidates[np.argmin(np.abs(times[candidates] - target[k]))]
    return given[np.searchsorted(order, wanted)]


@dataclass(frozen=True)
class Run:
    """Frames one decoder pass gives: it seeks to `keyframe` (None: the stream's start), decodes on
    to the last of `frames`, and skips the other frames at FFmpeg's skip_frame level `skip`."""

    frames: np.ndarray  # sorted frame indices
    keyframe: int | None
    skip: str


def seek_runs(meta: Probe, order: np.ndarray) -> list[Run]:
    """The runs that give the sorted unique frame indices `order`: a new run (and a seek) only where a
    keyframe lies between two of them; without one, seeking would land on the same keyframe and
    decode the same frames again."""
    key_index = np.searchsorted(meta.frame_times, meta.keyframe_times)
    runs = []
    for frames in seek_segments(meta.frame_times, meta.keyframe_times, order):
        before = np.searchsorted(meta.keyframe_times, meta.frame_times[frames[0]], "right") - 1
        keyframe = int(key_index[before]) if before >= 0 else None
        if np.isin(frames, key_index).all():
            skip = SKIP_ALL
        elif meta.skip == SKIP_BIDIR and not meta.in_chain(frames).all():
            skip = SKIP_NONREF  # a B-frame is asked for: the B-frames it may reference are kept
        else:
            skip = meta.skip
        runs.append(Run(frames, keyframe, skip))
    return runs


def seek_segments(frame_times: np.ndarray, keyframe_times: np.ndarray, wanted: np.ndarray) -> list[np.ndarray]:
    """Group wanted frame indices into runs that one decoder pass serves: a new run starts only where a
    keyframe lies between two wanted frames."""
    wanted = np.unique(wanted)
    runs: list[list[int]] = []
    for index in wanted:
        t = frame_times[index]
        if runs:
            prev = frame_times[runs[-1][-1]]
            if np.searchsorted(keyframe_times, prev, "right") == np.searchsorted(keyframe_times, t, "right"):
                runs[-1].append(int(index))
                continue
        runs.append([int(index)])
    return [np.asarray(run) for run in runs]
