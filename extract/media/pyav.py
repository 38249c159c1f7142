"""Decoding in this process with PyAV (FFmpeg's own libraries, shipped in its wheel).

One `MediaFile` per video: opened once, probed once (a pass over its packets), then decoded per view.
Frames come out of FFmpeg's decoder and through the same filter graph the ffmpeg command ran before
(scale with bicubic, crop or pad, to RGB), so they are the bytes the command gave; decoding them in
process rather than in ffmpeg children decides which packets the decoder sees and skips, packet by
packet, which a command cannot: only the frames asked for and the frames they reference are decoded.

Time limits: every loop checks the video's deadline between packets, and the decode workers that run
this are killed by their executor if a call into FFmpeg ever overstays it (see `extract.executor`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from extract.media.bitstream import SKIP_NOTHING
from extract.media.plan import Run, seek_runs, targets
from extract.media.probe import MediaError, Probe, read_probe, video_stream

RESIZE_MODES = ("crop", "pad", "stretch")
COVER = "cover"  # scaled to cover the size, aspect kept, nothing cut: a multi-crop clips view cuts its crops from it

# FFmpeg's errors reach the exceptions PyAV raises (as their `log`), which become the video's one-line
# failure in its store; they are not log lines of this program (the ffmpeg command's stderr was not either)
av.logging.set_level(av.logging.ERROR)
logging.getLogger("libav").addHandler(logging.NullHandler())
logging.getLogger("libav").propagate = False


def decoder_version() -> str:
    """What decodes, as provenance: PyAV and the FFmpeg libraries in its wheel."""
    codec = ".".join(map(str, av.library_versions["libavcodec"]))
    return f"PyAV {av.__version__} (FFmpeg libavcodec {codec})"


class MediaFile:
    """One file, opened in this process for `timeout` seconds of work in all (the ffmpeg_timeout_s
    setting), its video decoded on `threads` threads."""

    def __init__(self, path: str | Path, timeout: float, threads: int = 1, probe: Probe | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MediaError(f"file not found: {self.path}")
        if self.path.stat().st_size == 0:
            raise MediaError(f"empty file (0 bytes): {self.path}")
        self.timeout, self.threads = timeout, max(1, threads)
        self.deadline = time.monotonic() + timeout
        self.container = self._open()
        self.video = video_stream(self.container)
        self._probe = probe  # one read before, where the caller has it
        self._graphs: dict[tuple, av.filter.Graph] = {}
        self._rotation: int | None = None
        self._last_error = ""

    def __enter__(self) -> MediaFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def probe(self) -> Probe:
        if self._probe is None:
            self._probe = read_probe(self.container, self.check_time)
        return self._probe

    def info(self) -> dict[str, float | int | bool]:
        """Per-video facts kept next to the decoded rows; width and height as displayed (after rotation)."""
        meta = self.probe()
        width = height = rotation = 0
        if self.video is not None:
            width, height = self.video.codec_context.width, self.video.codec_context.height
            rotation = self._display_rotation()
            if rotation in (90, 270):
                width, height = height, width
        return {
            "duration": meta.duration,
            "fps": meta.fps,
            "width": width,
            "height": height,
            "rotation": rotation,
            "has_audio": meta.has_audio,
        }

    def frames(
        self,
        wanted: np.ndarray,
        size: tuple[int, int],
        resize: str,
        seek: str = "exact",
        max_shift: float = 0.1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames for the indices `wanted` (into the probe's frame_times), as uint8 RGB (len(wanted),
        H, W, 3) resized to (height, width) by `resize`, and the index of the frame each one is.

        `seek` says how exactly (see `extract.media.plan`). Each run of wanted frames between two
        keyframes is one pass: seek to the keyframe before it, decode the frames asked for and, of
        the others, only those the probe says may be referenced (skipped at FFmpeg's skip_frame
        level), stop after the packet of the last frame asked for and drain the decoder.
        """
        meta = self.probe()
        height, width = size
        if resize not in (*RESIZE_MODES, COVER):
            raise ValueError(f"unknown resize mode {resize!r}; expected one of {', '.join(RESIZE_MODES)}")
        if not meta.has_video:
            raise MediaError("no video stream (audio-only file)")
        found = targets(meta, wanted, seek, max_shift)
        order = np.unique(found)
        if not len(order):
            return np.zeros((0, height, width, 3), np.uint8), found
        if meta.seekable:
            got: dict[int, np.ndarray] = {}
            for run in seek_runs(meta, order):
                got.update(self._decode_run(run, size, resize))
            missing = order[~np.isin(order, list(got))]
            if len(missing):  # a keyframe the decoder would not start from, a seek that landed late
                got.update(self._decode_run(Run(missing, None, SKIP_NOTHING), size, resize))
        else:
            got = self._decode_in_order(order, size, resize)
        if len(got) < len(order):
            reason = f"; last error: {self._last_error}" if self._last_error else ""
            raise MediaError(f"decoded {len(got)} of {len(order)} sampled frames (truncated or corrupt video?){reason}")
        return np.stack([got[int(i)] for i in found]), found

    def audio(self, sample_rate: int, max_seconds: float | None) -> np.ndarray:
        """The first audio stream as mono float32 at `sample_rate`, resampled by FFmpeg, at most
        max_seconds long (empty where the file has no audio)."""
        # its own opening: packets before the first video keyframe (an edit list's priming) are read too
        container = self._open()
        try:
            if not container.streams.audio:
                return np.zeros(0, np.float32)
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            limit = round(max_seconds * sample_rate) if max_seconds else None
            chunks, count = [], 0
            for frame in self._decoded(container, stream, resampler):
                chunks.append(frame.to_ndarray().reshape(-1))
                count += len(chunks[-1])
                if limit is not None and count >= limit:
                    break
        finally:
            container.close()
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return samples[:limit].astype(np.float32, copy=False)

    def _decoded(
        self, container: av.container.InputContainer, stream: av.AudioStream, resampler: av.AudioResampler
    ) -> Iterator[av.AudioFrame]:
        for packet in self._packets(container, stream):
            for frame in self._decode(stream, packet):
                yield from resampler.resample(frame)
        for frame in self._decode(stream, None):
            yield from resampler.resample(frame)
        yield from resampler.resample(None)

    def _decode_run(self, run: Run, size: tuple[int, int], resize: str) -> dict[int, np.ndarray]:
        meta = self.probe()
        assert meta.pts is not None
        index_of = {int(meta.pts[i]): int(i) for i in run.frames}
        last = max(index_of)
        if run.keyframe is None:
            self._rewind()
        else:
            self.container.seek(int(meta.pts[run.keyframe]), backward=True, stream=self.video)
        stream = self._video_decoder()
        context = stream.codec_context
        got: dict[int, np.ndarray] = {}
        fed: set[int] = set()
        skip = None
        for packet in self._packets(self.container, stream):
            if packet.dts is not None and packet.dts > last:
                break  # decode times never fall: every packet asked for has passed
            asked = packet.pts in index_of
            level = SKIP_NOTHING if asked else run.skip
            if level != skip:
                context.skip_frame = skip = level
            self._keep(self._decode(stream, packet), index_of, got, size, resize)
            if asked:
                fed.add(packet.pts)
                if len(fed) == len(index_of):
                    break
        self._keep(self._decode(stream, None), index_of, got, size, resize)  # drain: frames held for reordering
        return got

    def _decode_in_order(self, order: np.ndarray, size: tuple[int, int], resize: str) -> dict[int, np.ndarray]:
        """Frames number `order` (sorted, unique) in presentation order, decoding every frame from the start.

        For streams without presentation times, where seeking and picking by time cannot be trusted.
        """
        self._rewind()
        stream = self._video_decoder()
        stream.codec_context.skip_frame = SKIP_NOTHING
        wanted = {int(i): int(i) for i in order}
        got: dict[int, np.ndarray] = {}
        number = 0

        def numbered(frames: list[av.VideoFrame]) -> Iterator[tuple[int, av.VideoFrame]]:
            nonlocal number
            for frame in frames:
                yield number, frame
                number += 1

        for packet in self._packets(self.container, stream):
            self._keep_numbered(numbered(self._decode(stream, packet)), wanted, got, size, resize)
            if number > order[-1]:
                return got
        self._keep_numbered(numbered(self._decode(stream, None)), wanted, got, size, resize)
        return got

    def _keep(
        self, frames: list[av.VideoFrame], index_of: dict[int, int], got: dict, size: tuple[int, int], resize: str
    ) -> None:
        self._keep_numbered(((frame.pts, frame) for frame in frames), index_of, got, size, resize)

    def _keep_numbered(
        self,
        frames: Iterator[tuple[int | None, av.VideoFrame]],
        index_of: dict[int, int],
        got: dict,
        size: tuple[int, int],
        resize: str,
    ) -> None:
        for key, frame in frames:
            if self._rotation is None:
                self._rotation = display_rotation(frame.rotation)
            index = index_of.get(key) if key is not None else None
            if index is not None and index not in got:
                got[index] = self._converted(frame, size, resize)

    def note_rotation(self, angle: float) -> None:
        """The display matrix's angle as another decoder of this file read it (torchcodec, from the
        stream), so that `info` need not decode a frame here to learn it."""
        if self._rotation is None:
            self._rotation = display_rotation(angle)

    def _converted(self, frame: av.VideoFrame, size: tuple[int, int], resize: str) -> np.ndarray:
        rotation = display_rotation(frame.rotation)
        key = (frame.width, frame.height, frame.format.name, rotation, size, resize)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = _graph(frame, rotation, size, resize, self.video.time_base)
        graph.push(frame)
        return graph.pull().to_ndarray()

    def _decode(self, stream: av.stream.Stream, packet: av.Packet | None) -> list:
        """A packet's frames; a packet the decoder refuses is passed over, as the ffmpeg command does."""
        try:
            return stream.codec_context.decode(packet)
        except av.error.FFmpegError as exc:
            self._last_error = _reason(exc)
            return []

    def _packets(self, container: av.container.InputContainer, stream: av.stream.Stream) -> Iterator[av.Packet]:
        try:
            for packet in container.demux(stream):
                self.check_time()
                if packet.size:
                    yield packet
        except av.error.FFmpegError as exc:  # a damaged container: what was read so far counts
            self.check_time()  # unless the time limit interrupted the read
            self._last_error = _reason(exc)

    def _video_decoder(self) -> av.VideoStream:
        context = self.video.codec_context
        if not context.is_open:
            context.thread_count = self.threads
            context.thread_type = "AUTO" if self.threads > 1 else "SLICE"
        return self.video

    def _display_rotation(self) -> int:
        """The display matrix's angle, which FFmpeg hands over with decoded frames only: the first
        frame's, decoded here where no frame has been yet."""
        if self._rotation is None:
            self._rewind()
            stream = self._video_decoder()
            stream.codec_context.skip_frame = SKIP_NOTHING
            for packet in self._packets(self.container, stream):
                frames = self._decode(stream, packet) or self._decode(stream, None)
                if frames:
                    self._rotation = display_rotation(frames[0].rotation)
                    break
        return self._rotation or 0

    def _rewind(self) -> None:
        """Back to the file's first packet, by opening it again: a seek lands on a keyframe and would
        miss the packets before it."""
        index = self.video.index
        self.container.close()
        self.container = self._open()
        self.video = self.container.streams[index]

    def _open(self) -> av.container.InputContainer:
        try:
            # the timeout stops FFmpeg's own reads (an interrupt callback) once the video's time is up
            return av.open(str(self.path), timeout=max(0.001, self.deadline - time.monotonic()))
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            # the time limit interrupts FFmpeg's reads, and the demuxer then blames the file
            self.check_time()
            raise MediaError(f"FFmpeg cannot read it: {_reason(exc)}") from None

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise self._overdue()

    def _overdue(self) -> MediaError:
        return MediaError(f"reading the video took longer than {self.timeout:g} s (REELFEAT_FFMPEG_TIMEOUT)")


def display_rotation(angle: float) -> int:
    """A frame's display-matrix angle in whole degrees, 0..359; 0 where the matrix holds none (NaN: a
    damaged or all-zero matrix)."""
    return int(round(angle)) % 360 if math.isfinite(angle) else 0


def _reason(exc: Exception) -> str:
    """FFmpeg's own last word where it logged one ("moov atom not found"), else the error's name."""
    log = getattr(exc, "log", None)
    if log and str(log[-1]).strip():
        return str(log[-1]).strip()
    return getattr(exc, "strerror", None) or str(exc)


def _graph(frame: av.VideoFrame, rotation: int, size: tuple[int, int], resize: str, time_base) -> av.filter.Graph:
    """Frames of this shape turned upright (as ffmpeg's autorotate turns them), resized to (height,
    width) with bicubic scaling, `crop` filling and cutting the centre, `pad` letterboxing, `stretch`
    distorting; then RGB."""
    height, width = size
    graph = av.filter.Graph()
    chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=time_base)]
    theta = (-rotation) % 360  # the display matrix turns counter-clockwise; autorotate turns it back
    if theta == 90:
        chain.append(graph.add("transpose", "clock"))
    elif theta == 180:
        chain += [graph.add("hflip"), graph.add("vflip")]
    elif theta == 270:
        chain.append(graph.add("transpose", "cclock"))
    elif theta:
        chain.append(graph.add("rotate", f"{theta}*PI/180"))
    if resize == "crop":
        chain.append(graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=increase:flags=bicubic"))
        chain.append(graph.add("crop", f"{width}:{height}"))
    elif resize == COVER:
        chain.append(graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=increase:flags=bicubic"))
    elif resize == "pad":
        chain.append(graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=decrease:flags=bicubic"))
        chain.append(graph.add("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2"))
    else:
        chain.append(graph.add("scale", f"{width}:{height}:flags=bicubic"))
    chain += [graph.add("setsar", "1"), graph.add("format", "rgb24"), graph.add("buffersink")]
    for source, sink in zip(chain, chain[1:], strict=False):
        source.link_to(sink)
    graph.configure()
    return graph
