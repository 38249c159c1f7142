"""The decode stage: every view of every video, decoded once, into the store `data/decoded/<view>`.

Videos are decoded by the executor's workers (FFmpeg's libraries in each, see `extract.media`), a
bounded number in flight so memory stays flat however many videos there are; this process is the
only writer. Each view of each video ends in rows or in a one-line failure (probe or decode)
recorded in its store. A worker still decoding one video `KILL_GRACE_S` after that video's time
limit (a call into FFmpeg that never returns) is killed and the video recorded as failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extract import media
from extract.core.config import ConfigError
from extract.core.errors import Failure, run_step
from extract.core.settings import Settings, cores
from extract.executor import make_executor
from extract.media.views import View, view_config_json, view_from_params
from extract.store import BuildSummary, StoreBuilder

if TYPE_CHECKING:
    from extract.media.nvdec import DeviceDecoder

INFO_DTYPES = {
    "duration": "f8",
    "fps": "f4",
    "width": "i4",
    "height": "i4",
    "rotation": "i2",
    "has_audio": "?",
}


def info_dtypes(view: View) -> dict[str, str]:
    """The per-video facts a view's store keeps: the probe's, and what `seek: auto` resolved to."""
    return INFO_DTYPES | ({"seek": "str"} if view.kind != "audio" and view.seek == "auto" else {})


def views_from_params(decode_params: dict) -> dict[str, View]:
    views = (decode_params or {}).get("views")
    if not isinstance(views, dict) or not views:
        raise ConfigError("params.yaml decode.views: name at least one view, e.g. `frames: {type: frames}`")
    extra = sorted(set(decode_params) - {"views"})
    if extra:
        raise ConfigError(f"params.yaml decode: unknown key(s) {extra}; valid keys are ['views']")
    return {name: view_from_params(name, values or {}) for name, values in views.items()}


@dataclass(frozen=True)
class DecodeJob:
    vid: str
    path: str
    views: dict[str, View]
    threads: int
    timeout: float = media.FFMPEG_TIMEOUT_S  # seconds for all of this video's decoding: ffmpeg_timeout_s
    # frames and clips decoded by torchcodec on this torch device ("cuda:0": NVDEC) and left there,
    # where the file allows (else on the CPU); each view's info then says what decoded it (`decoded_by`)
    device: str | None = None

    def __str__(self) -> str:
        return self.path


Decoded = dict[str, "tuple[np.ndarray, np.ndarray, dict] | Failure"]
KILL_GRACE_S = 30.0  # past a video's time limit, before its worker is killed (the limit is checked between packets)


def worker_limit(timeout: float) -> float:
    """Seconds a decode worker may hold one video before it is killed."""
    return timeout + KILL_GRACE_S


def biggest_first(tasks: list[DecodeJob]) -> list[DecodeJob]:
    """Tasks by file size, largest first: the longest decodes start first and the short ones fill the
    other cores behind them, instead of one long video holding up the end of a run alone (the decode
    stage on the seven real clips, 2 workers: 1.71 s in manifest order, 1.50 s largest first)."""

    def size(task: DecodeJob) -> int:
        try:
            return os.path.getsize(task.path)
        except OSError:
            return 0  # missing: fails at once, wherever it goes

    return sorted(tasks, key=size, reverse=True)


def decode_video(task: DecodeJob) -> Decoded:
    """All requested views of one video: (rows, timestamps, info) per view, or its Failure. The file
    is opened and probed once for all of them."""
    opened = run_step("probe", _opened, task)
    if isinstance(opened, Failure):
        return dict.fromkeys(task.views, opened)
    # frames and clips first: their frames say the display rotation, which an audio view's facts need too
    views = sorted(task.views.items(), key=lambda item: item[1].kind == "audio")
    on_device = None
    if task.device:
        import torch

        from extract.media.nvdec import DeviceDecoder

        on_device = DeviceDecoder(torch.device(task.device))
    with opened as source:
        return {name: run_step("decode", _decode_view, source, view, on_device) for name, view in views}


def _opened(task: DecodeJob) -> media.MediaFile:
    source = media.MediaFile(task.path, task.timeout, task.threads)
    try:
        source.probe()
    except BaseException:
        source.close()
        raise
    return source


def _decode_view(
    source: media.MediaFile, view: View, on_device: DeviceDecoder | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    meta = source.probe()
    if view.kind == "audio":
        samples = source.audio(view.sample_rate, view.max_seconds) if meta.has_audio else np.zeros(0, np.float32)
        return samples, (np.arange(len(samples)) / view.sample_rate).astype(np.float32), source.info()
    if not meta.has_video:
        raise media.MediaError("no video stream (audio-only file)")
    index, _ = view.plan(meta)
    seek = view.seek_for(meta, index.ravel())
    crops = getattr(view, "crops", 1)
    resize = media.COVER if crops > 1 else view.resize  # the crops are cut from frames that cover the size
    by: dict[str, str] = {}
    if on_device is not None:
        frames, found, by["decoded_by"] = _frames_on(
            on_device, source, index.ravel(), view.size, resize, seek, view.max_shift
        )
    else:
        frames, found = source.frames(index.ravel(), view.size, resize, seek, view.max_shift)
    # fast and keyframes seeking may take a frame near the planned one: its own time is stored
    times = view.timestamps(meta, found.reshape(index.shape))
    info = source.info() | ({"seek": seek} if "seek" in info_dtypes(view) else {}) | by
    frames = frames.reshape(*index.shape, *frames.shape[1:])
    if crops > 1:
        return view.cut_crops(frames), np.repeat(times, crops), info
    return frames, times, info


def _frames_on(
    decoder: DeviceDecoder,
    source: media.MediaFile,
    wanted: np.ndarray,
    size: tuple,
    resize: str,
    seek: str,
    max_shift: float,
) -> tuple:
    """Frames decoded on the decoder's device, or on the CPU where NVDEC refuses the file (before
    decoding, or with an error of its own: the CPU decoder then says whether the file is at fault);
    and what decoded them."""
    try:
        return decoder.frames(source, wanted, size, resize, seek, max_shift)
    except media.MediaError:
        raise  # the video's time is up
    except Exception as refused:  # noqa: BLE001 - NvdecRefused, or torchcodec's own error
        reason = " ".join(str(refused).split())[:300]
        frames, found = source.frames(wanted, size, resize, seek, max_shift)
        return frames, found, f"{media.decoder_version()} on the CPU: {reason}"


def run_decode(
    rows: list[dict[str, str]],
    views: dict[str, View],
    out_dir: str | Path,
    workers: int | None = None,
    progress: Callable[[int], object] | None = None,
    backend: str | None = None,
    settings: Settings | None = None,
) -> dict[str, BuildSummary]:
    """Decode the rows of a prepared manifest into one store per view, reusing unchanged rows.

    `settings` default to the environment's (`Settings.from_environment`); `workers` and `backend`
    override them. Decode processes: one per core unless set (0: decode in this process)."""
    out_dir = Path(out_dir)
    settings = (settings or Settings.from_environment()).overridden(workers=workers, backend=backend)
    workers = settings.decode_processes()
    threads = max(1, cores() // max(1, workers))
    builders = {
        name: StoreBuilder(
            out_dir / name,
            config=view_config_json(view),
            row_shape=view.row_shape(),
            dtype=np.float32 if view.kind == "audio" else np.uint8,
            attrs={"view": name, "kind": view.kind, "decoder": media.decoder_version()},
            info_dtypes=info_dtypes(view),
            checkpoint_s=settings.checkpoint_s,
            shard_bytes=settings.shard_bytes,
            storage=getattr(view, "storage", "raw"),
            jpeg_quality=getattr(view, "jpeg_quality", 90),
        )
        for name, view in views.items()
    }
    tasks = []
    for row in rows:
        needed = {name: view for name, view in views.items() if not builders[name].reusable(row["id"], row["sha256"])}
        if needed:
            tasks.append(DecodeJob(row["id"], row["video"], needed, threads, settings.ffmpeg_timeout_s))
    sha_of = {row["id"]: row["sha256"] for row in rows}
    limit = worker_limit(settings.ffmpeg_timeout_s)
    for task, decoded in make_executor(settings, workers).map(decode_video, biggest_first(tasks), limit_s=limit):
        if isinstance(decoded, Failure):  # its worker died on it, or decode_video itself raised
            decoded = dict.fromkeys(task.views, decoded)
        for name, result in decoded.items():
            if isinstance(result, Failure):
                builders[name].add_failure(task.vid, str(result))
            else:
                builders[name].add(task.vid, sha_of[task.vid], *result)
        if progress:
            progress(1)
    order = [(row["id"], row["sha256"]) for row in rows]
    return {name: builder.finish(order) for name, builder in builders.items()}
