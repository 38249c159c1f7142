"""ffprobe and ffmpeg: what a video holds, and decoding only the frames a view needs.

Every call into ffmpeg runs in a child process with a time limit, so a hostile or broken
file can stall or crash ffmpeg but never this process.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from extract.errors import UserError
from extract.settings import Settings

PROBE_TIMEOUT_S = 30.0
RESIZE_MODES = ("crop", "pad", "stretch")
SEEK_MODES = ("exact", "fast", "keyframes")
# Each seeking input holds a decoder with its frame pool (~16 frames of the source size), so the
# inputs per ffmpeg process are capped to keep one decode's memory near this budget.
DECODER_BUDGET_BYTES = 192 << 20
FFMPEG_TIMEOUT_S = Settings.ffmpeg_timeout_s  # an ffmpeg's wall-clock limit where the caller gives none


class MediaError(UserError):
    """A video that cannot be used; the message is a one-line reason stored with the failure."""


def _run(cmd: list[str], timeout: float, what: str) -> bytes:
    return _run_with_log(cmd, timeout, what)[0]


def _run_with_log(cmd: list[str], timeout: float, what: str) -> tuple[bytes, str]:
    """stdout and stderr of a child with a time limit; its failure is the video's, with its last word."""
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{what} took longer than {timeout:g} s (REELFEAT_FFMPEG_TIMEOUT)") from None
    log = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise MediaError(f"{what} failed: {_last_line(log)}")
    return done.stdout, log


def _last_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and "Parsed_showinfo" not in ln]
    return lines[-1] if lines else "no message from ffmpeg"


@dataclass(frozen=True)
class Probe:
    """What ffprobe says of one file. Times are absolute stream seconds, as ffmpeg sees them."""

    duration: float  # seconds of media from the first video frame (or the file's start)
    start_time: float  # the container's start; ffmpeg's -ss counts from here
    has_video: bool
    has_audio: bool
    width: int  # as displayed, after rotation
    height: int
    fps: float
    rotation: int  # display rotation in degrees (0, 90, 180, 270); decoded frames are upright
    frame_times: np.ndarray  # (M,) sorted presentation times of every video frame
    keyframe_times: np.ndarray  # (K,) sorted presentation times of the keyframes
    # False when packets carry decode times only (H.264 with B-frames in AVI, raw streams): the
    # decoder then guesses frame times, so frames are picked by their number in presentation order
    # (frame i is at frame_times[i]: the decode-time grid holds the same times, in order).
    seekable: bool = True
    # Whether frames are reordered (B-frames): without them every frame is a reference frame, so
    # skipping non-reference frames saves nothing and `fast` seeking decodes exactly instead.
    has_b_frames: bool = True

    def as_info(self) -> dict[str, float | int | bool]:
        """Per-video facts worth keeping next to the decoded rows."""
        return {
            "duration": self.duration,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "has_audio": self.has_audio,
        }


def probe(path: str | Path) -> Probe:
    """Probe a file: streams, rotation, and the time of every video frame (from packets, no decoding)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise MediaError(f"empty file (0 bytes): {path}")
    # One ffprobe for streams and packets: a process start costs about as much as reading a short video's packets.
    raw = _run(
        [
            "ffprobe",
            *("-v", "error", "-show_format", "-show_streams"),
            *("-show_entries", "packet=stream_index,pts_time,dts_time,flags", "-of", "json", str(path)),
        ],
        PROBE_TIMEOUT_S,
        "ffprobe",
    )
    try:
        info = json.loads(raw or b"{}")
    except ValueError:
        raise MediaError("ffprobe printed something that is not JSON (a damaged container?)") from None
    fmt = info.get("format", {})
    streams = info.get("streams", [])
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    start_time = _float(fmt.get("start_time"), 0.0)
    if video is None:
        duration = _float(fmt.get("duration"), 0.0)
        if not has_audio:
            raise MediaError("no video or audio stream (not a media file?)")
        empty = np.zeros(0)
        return Probe(duration, start_time, False, True, 0, 0, 0.0, 0, empty, empty)

    frame_times, keyframe_times, packets, seekable = _packet_times(info.get("packets", []), video.get("index", 0))
    if len(frame_times) == 0:
        raise MediaError("video stream has no frames")
    declared = int(_float(video.get("nb_frames"), 0) or 0)  # from the container's index, where it has one
    # One frame of slack: AVI headers can count a frame the muxer then dropped (seen from ffmpeg's own
    # AVI muxer with -shortest); the file plays and every packet is there.
    if packets < declared - 1:
        raise MediaError(f"truncated video: its index lists {declared} frames but only {packets} can be read")
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    if not fps and len(frame_times) > 1:
        fps = (len(frame_times) - 1) / float(frame_times[-1] - frame_times[0])
    last_frame_end = float(frame_times[-1]) + (1.0 / fps if fps else 0.0)
    duration = last_frame_end - float(frame_times[0])
    rotation = _rotation(video)
    width, height = int(video.get("width", 0)), int(video.get("height", 0))
    if rotation in (90, 270):
        width, height = height, width
    return Probe(
        duration=duration,
        start_time=start_time,
        has_video=True,
        has_audio=has_audio,
        width=width,
        height=height,
        fps=float(fps or 0.0),
        rotation=rotation,
        frame_times=frame_times,
        keyframe_times=keyframe_times if len(keyframe_times) else frame_times[:1],
        seekable=seekable,
        has_b_frames=int(_float(video.get("has_b_frames"), 1) or 0) > 0,
    )


def _packet_times(packets: list[dict], stream_index: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Frame and keyframe times, packets read, and whether every packet had a presentation time.

    Packets cost no decoding. Where a packet has no presentation time its decode time stands in:
    one per frame, on the same grid, which is all a sorted list of frame times needs.
    """
    times, keys = [], []
    seekable = True
    read = 0
    for packet in packets:
        if packet.get("stream_index") != stream_index:
            continue
        read += 1
        t = _float(packet.get("pts_time"), None)
        if t is None:
            seekable = False
            t = _float(packet.get("dts_time"), None)
        flags = str(packet.get("flags", ""))
        if t is None or "D" in flags:
            continue
        times.append(t)
        if "K" in flags:
            keys.append(t)
    unique_times = np.unique(np.asarray(times, dtype=np.float64))
    return unique_times, np.unique(np.asarray(keys, dtype=np.float64)), read, seekable


def _float(value: object, default: float | None) -> float | None:
    """A finite number from ffprobe's text, else `default` ("N/A", "nan" and damaged fields)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _rate(value: str | None) -> float:
    if not value or "/" not in value:
        return 0.0
    num, den = value.split("/", 1)
    return float(num) / float(den) if float(den) else 0.0


def _rotation(stream: dict) -> int:
    """Display-matrix angle as ffprobe reports it (phones), else the old `rotate` tag, in 0..359.

    Decoding needs none of it: ffmpeg's autorotate turns frames upright. It is kept as a fact, so
    a tag that is not a number (seen in damaged files) counts as no rotation.
    """
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(round(_float(side["rotation"], 0.0))) % 360
    return int(round(_float(stream.get("tags", {}).get("rotate"), 0.0))) % 360


def resize_filters(stream: ffmpeg.Stream, size: tuple[int, int], mode: str) -> ffmpeg.Stream:
    """Resize to (height, width): `crop` fills and cuts the centre, `pad` letterboxes, `stretch` distorts."""
    height, width = size
    if mode == "crop":
        stream = stream.filter("scale", width, height, force_original_aspect_ratio="increase", flags="bicubic")
        stream = stream.filter("crop", width, height)
    elif mode == "pad":
        stream = stream.filter("scale", width, height, force_original_aspect_ratio="decrease", flags="bicubic")
        stream = stream.filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2")
    elif mode == "stretch":
        stream = stream.filter("scale", width, height, flags="bicubic")
    else:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    return stream.filter("setsar", 1)


def seek_segments(frame_times: np.ndarray, keyframe_times: np.ndarray, wanted: np.ndarray) -> list[np.ndarray]:
    """Group wanted frame indices into runs that one decoder pass serves.

    A new run (and a seek) starts only where a keyframe lies between two wanted frames:
    without one, seeking would land on the same keyframe and decode the same frames again.
    """
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


def decode_frames(
    path: str | Path,
    meta: Probe,
    wanted: np.ndarray,
    size: tuple[int, int],
    resize: str,
    threads: int = 0,
    seek: str = "exact",
    max_shift: float = 0.1,
    timeout: float = FFMPEG_TIMEOUT_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames for the indices `wanted` (into meta.frame_times), as uint8 RGB (len(wanted), H, W, 3),
    and the index of the frame each one really is.

    `seek` says how exactly (see SEEK_MODES): `exact` gives the wanted frames themselves; `fast`
    decodes reference frames only and gives, for each wanted frame, the nearest decoded one within
    `max_shift` seconds (the wanted frame itself where none is, and every wanted frame of a stream
    without B-frames, whose frames are all references); `keyframes` gives the keyframe nearest in
    time, decoding keyframes only.

    Few ffmpeg processes (DECODER_BUDGET_BYTES caps each): each run of nearby frames is an input that
    seeks to the run's first frame, `select` passes only the frames around wanted ones to the scaler,
    and `concat` joins the runs. Frames after a run's last wanted frame are never decoded at all.
    Each ffmpeg process is stopped after `timeout` seconds (the ffmpeg_timeout_s setting).
    """
    wanted = np.asarray(wanted, dtype=np.int64)
    height, width = size
    if not len(wanted):
        return np.zeros((0, height, width, 3), np.uint8), wanted
    if seek not in SEEK_MODES:
        raise ValueError(f"unknown seek mode {seek!r}; expected one of {', '.join(SEEK_MODES)}")
    if not meta.seekable:  # frames can only be picked by number, in decoding order
        order = np.unique(wanted)
        frames = _decode_in_order(path, order, size, resize, threads, timeout)
        return frames[np.searchsorted(order, wanted)], wanted
    if seek == "keyframes":
        wanted = nearest_keyframe(meta, wanted)
    order = np.unique(wanted)
    if seek == "fast" and meta.has_b_frames:
        found, got = _decode_fast(path, meta, order, size, resize, threads, max_shift, timeout)
        missing = order[got < 0]
        if len(missing):  # no reference frame near enough: decode those exactly
            found[got < 0] = _decode_exact(path, meta, missing, size, resize, threads, "", timeout)
            got[got < 0] = missing
    else:
        # keyframes: the decoder skips every other frame; a file whose decoder disagrees on what is a
        # keyframe comes out short and is decoded exactly instead
        skip = "nokey" if seek == "keyframes" else ""
        try:
            found, got = _decode_exact(path, meta, order, size, resize, threads, skip, timeout), order
        except MediaError:
            if not skip:
                raise
            found, got = _decode_exact(path, meta, order, size, resize, threads, "", timeout), order
    position = np.searchsorted(order, wanted)
    return found[position], got[position]


def nearest_keyframe(meta: Probe, wanted: np.ndarray) -> np.ndarray:
    """For each wanted frame index, the index of the keyframe nearest to it in time."""
    key_index = np.unique(np.clip(np.searchsorted(meta.frame_times, meta.keyframe_times), 0, len(meta.frame_times) - 1))
    key_times = meta.frame_times[key_index]
    after = np.clip(np.searchsorted(key_times, meta.frame_times[wanted]), 0, len(key_times) - 1)
    before = np.clip(after - 1, 0, len(key_times) - 1)
    target = meta.frame_times[wanted]
    closer_before = np.abs(target - key_times[before]) <= np.abs(key_times[after] - target)
    return key_index[np.where(closer_before, before, after)]


def _frame_windows(meta: Probe) -> np.ndarray:
    """(M + 1,) bounds: frame i is the only frame with a time in [bounds[i], bounds[i + 1])."""
    times = meta.frame_times
    return np.concatenate([[times[0] - 1.0], (times[1:] + times[:-1]) / 2, [times[-1] + 1.0]])


def _decoder_cap(meta: Probe) -> int:
    """Seeking inputs per ffmpeg process, so that their decoders' frame pools fit the budget."""
    per_input = max(1, meta.width * meta.height) * 1.5 * 16  # yuv420 frame pool of one decoder
    return max(2, int(DECODER_BUDGET_BYTES // per_input))


def _decode_exact(
    path: str | Path,
    meta: Probe,
    order: np.ndarray,
    size: tuple[int, int],
    resize: str,
    threads: int,
    skip: str,
    timeout: float,
) -> np.ndarray:
    """The frames at the sorted unique indices `order`, each selected by its own time window."""
    bounds = _frame_windows(meta)
    windows = np.stack([bounds[order], bounds[order + 1]], axis=1)
    frames = []
    for runs, run_windows in _batches(meta, order, windows):
        stream = _windowed_inputs(path, meta, runs, run_windows, size, resize, threads, skip, log=False)
        raw, _ = _run_decode(stream, len(run_windows), timeout)
        frames.append(_frames(raw, size, len(run_windows)))
    return np.concatenate(frames)


def _batches(meta: Probe, order: np.ndarray, windows: np.ndarray) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """Runs of `order` that one seek serves, grouped per ffmpeg process, with their windows."""
    runs = seek_segments(meta.frame_times, meta.keyframe_times, order)
    cap, start = _decoder_cap(meta), 0
    for first in range(0, len(runs), cap):
        batch = runs[first : first + cap]
        count = sum(len(run) for run in batch)
        yield batch, windows[start : start + count]
        start += count


def _decode_fast(
    path: str | Path,
    meta: Probe,
    order: np.ndarray,
    size: tuple[int, int],
    resize: str,
    threads: int,
    max_shift: float,
    timeout: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference frames only: for each index in `order`, the decoded frame nearest to it within a
    window of +-max_shift seconds (cut halfway to the neighbouring wanted frames, and never reaching
    back past the keyframe the frame depends on, which would decode the previous group of pictures).

    Returns the frames and the frame index of each (-1 where the window held no decoded frame).
    Which frames a decoder skips is only known once it has run, so showinfo reports the time of
    every frame that passes `select`.
    """
    times, bounds = meta.frame_times, _frame_windows(meta)
    target = times[order]
    key_before = meta.keyframe_times[np.clip(np.searchsorted(meta.keyframe_times, target, "right") - 1, 0, None)]
    halfway = (target[1:] + target[:-1]) / 2  # between neighbouring wanted frames
    low = np.maximum.reduce([target - max_shift, key_before - 1e-6, np.concatenate([[-np.inf], halfway])])
    low = np.minimum(low, bounds[order])  # a window always holds its own frame
    high = np.minimum(target + max_shift, np.concatenate([halfway, [np.inf]]))
    high = np.maximum(high, bounds[order + 1])
    windows = np.stack([low, high], axis=1)
    height, width = size
    found = np.zeros((len(order), height, width, 3), np.uint8)
    got = np.full(len(order), -1, np.int64)
    start = 0
    for runs, run_windows in _batches(meta, order, windows):
        stream = _windowed_inputs(path, meta, runs, run_windows, size, resize, threads, "noref", log=True)
        raw, log = _run_decode(stream, None, timeout)
        shown = np.sort(np.asarray(_SHOWN_TIME.findall(log), dtype=np.float64))
        frames = _frames(raw, size, len(shown))
        index = np.clip(np.searchsorted(bounds, shown, "right") - 1, 0, len(times) - 1)  # shown time -> frame
        slot = np.searchsorted(run_windows[:, 0], shown, "right") - 1  # the window each frame fell in
        for k in range(len(run_windows)):
            mine = np.flatnonzero(slot == k)
            if len(mine):
                best = mine[np.argmin(np.abs(times[index[mine]] - target[start + k]))]
                found[start + k], got[start + k] = frames[best], index[best]
        start += len(run_windows)
    return found, got


_SHOWN_TIME = re.compile(r"Parsed_showinfo.* n: *\d+ .*pts_time:(-?[0-9.]+(?:e-?[0-9]+)?)")


def decode_audio(
    path: str | Path, sample_rate: int, max_seconds: float | None, threads: int = 0, timeout: float = FFMPEG_TIMEOUT_S
) -> np.ndarray:
    """The first audio stream as mono float32 at `sample_rate`, resampled by ffmpeg, at most max_seconds long."""
    out_args: dict[str, object] = {"format": "f32le", "ac": 1, "ar": sample_rate}
    if max_seconds:
        out_args["t"] = max_seconds
    cmd = (
        ffmpeg.input(str(path), threads=threads)["a:0"]
        .output("pipe:", **out_args)
        .global_args("-nostdin", "-v", "error")
        .compile()
    )
    return np.frombuffer(_run(cmd, timeout, "ffmpeg audio decode"), np.float32).copy()


def _decode_in_order(
    path: str | Path, wanted: np.ndarray, size: tuple[int, int], resize: str, threads: int, timeout: float
) -> np.ndarray:
    """Frames number `wanted` (sorted, unique) in presentation order, decoding from the start.

    For streams without presentation times, where seeking and time-based selection cannot be
    trusted. ffmpeg stops once the last wanted frame is out, so frames after it are never decoded.
    """
    spans = np.split(wanted, np.flatnonzero(np.diff(wanted) > 1) + 1)  # runs of consecutive frames
    select = "+".join(f"between(n,{span[0]},{span[-1]})" for span in spans)
    stream = ffmpeg.input(str(path), threads=threads).video.filter("select", select)
    raw, _ = _run_decode(resize_filters(stream, size, resize), len(wanted), timeout)
    return _frames(raw, size, len(wanted))


def _windowed_inputs(
    path: str | Path,
    meta: Probe,
    runs: list[np.ndarray],
    windows: np.ndarray,
    size: tuple[int, int],
    resize: str,
    threads: int,
    skip: str,
    log: bool,
) -> ffmpeg.Stream:
    """One input per run (seek, read to the run's end) passing frames inside its windows, then resize
    and concat. `skip` is the decoder's skip_frame (noref, nokey, or "" for every frame); `log`
    adds showinfo, which prints the time of each frame passed."""
    streams, start = [], 0
    for run in runs:
        run_windows = windows[start : start + len(run)]
        start += len(run)
        select = "+".join(f"gte(t,{low:.6f})*lt(t,{high:.6f})" for low, high in run_windows)
        seek = max(0.0, run_windows[0, 0] - meta.start_time)
        # Read only up to the run's last window: ffmpeg demuxes all inputs at once, and an input
        # without a limit would be decoded to the end of the file.
        length = run_windows[-1, 1] - meta.start_time - seek
        options: dict[str, object] = {"copyts": None, "ss": f"{seek:.6f}", "t": f"{length:.6f}", "threads": threads}
        if skip:
            options["skip_frame"] = skip
        stream = resize_filters(ffmpeg.input(str(path), **options).video.filter("select", select), size, resize)
        streams.append(stream.filter("showinfo") if log else stream)  # after the resize: small frames to sum
    return streams[0] if len(streams) == 1 else ffmpeg.concat(*streams, v=1, a=0)


def _run_decode(stream: ffmpeg.Stream, count: int | None, timeout: float) -> tuple[bytes, str]:
    """Run one ffmpeg filter graph to raw RGB frames (at most `count`), with its log.

    The log holds showinfo's lines where the graph has showinfo (it logs at the info level).
    """
    output: dict[str, object] = {"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough"}
    if count is not None:
        output["vframes"] = count
    level = ("-v", "info", "-hide_banner", "-nostats") if count is None else ("-v", "error")
    cmd = stream.output("pipe:", **output).global_args("-nostdin", *level).compile()
    return _run_with_log(cmd, timeout, "ffmpeg decode")


def _frames(raw: bytes, size: tuple[int, int], count: int) -> np.ndarray:
    height, width = size
    frame_bytes = height * width * 3
    if len(raw) < count * frame_bytes:
        raise MediaError(f"decoded {len(raw) // frame_bytes} of {count} sampled frames (truncated or corrupt video?)")
    return np.frombuffer(raw, np.uint8, count=count * frame_bytes).reshape(count, height, width, 3)
