"""The decode stage: every view of every video, decoded once, into `data/decoded/<view>.h5`.

Videos are decoded in worker processes (each running ffmpeg children), a bounded number in
flight so memory stays flat however many videos there are; this process is the only writer.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract import media, ray_backend
from extract.ray_backend import backend_name
from extract.store import BuildSummary, StoreBuilder, checkpoint_seconds
from extract.views import ConfigError, View, view_config_json, view_from_params

INFO_DTYPES = {
    "duration": "f8",
    "fps": "f4",
    "width": "i4",
    "height": "i4",
    "rotation": "i2",
    "has_audio": "?",
}


def views_from_params(decode_params: dict) -> dict[str, View]:
    views = (decode_params or {}).get("views")
    if not isinstance(views, dict) or not views:
        raise ConfigError("params.yaml decode.views: name at least one view, e.g. `frames: {type: frames}`")
    extra = sorted(set(decode_params) - {"views"})
    if extra:
        raise ConfigError(f"params.yaml decode: unknown key(s) {extra}; valid keys are ['views']")
    return {name: view_from_params(name, values or {}) for name, values in views.items()}


def default_workers() -> int:
    """Decode processes: REELFEAT_WORKERS, else one per core."""
    return int(os.environ.get("REELFEAT_WORKERS", 0)) or os.cpu_count() or 1


@dataclass(frozen=True)
class Task:
    vid: str
    path: str
    views: dict[str, View]
    threads: int


Decoded = dict[str, "tuple[np.ndarray, np.ndarray, dict] | str"]


def decode_video(task: Task) -> tuple[str, Decoded]:
    """All requested views of one video: (rows, timestamps, info) per view, or a one-line reason."""
    try:
        meta = media.probe(task.path)
    except media.MediaError as exc:
        return task.vid, {name: str(exc) for name in task.views}
    out: Decoded = {}
    for name, view in task.views.items():
        try:
            out[name] = _decode_view(task, meta, view)
        except media.MediaError as exc:
            out[name] = str(exc)
    return task.vid, out


def _decode_view(task: Task, meta: media.Probe, view: View) -> tuple[np.ndarray, np.ndarray, dict]:
    if view.kind == "audio":
        samples = (
            media.decode_audio(task.path, view.sample_rate, view.max_seconds, task.threads)
            if meta.has_audio
            else np.zeros(0, np.float32)
        )
        return samples, (np.arange(len(samples)) / view.sample_rate).astype(np.float32), meta.as_info()
    if not meta.has_video:
        raise media.MediaError("no video stream (audio-only file)")
    index, times = view.plan(meta)
    frames = media.decode_frames(task.path, meta, index.ravel(), view.size, view.resize, task.threads)
    return frames.reshape(*index.shape, *frames.shape[1:]), times, meta.as_info()


def _results(tasks: list[Task], workers: int) -> Iterator[tuple[str, Decoded]]:
    """Results as they finish, never more than 2 x workers videos in flight."""
    if workers <= 1:
        yield from map(decode_video, tasks)
        return
    pending = iter(tasks)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        running = set()
        for task in pending:
            running.add(pool.submit(decode_video, task))
            if len(running) >= 2 * workers:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        for future in running:
            yield future.result()


def run_decode(
    rows: list[dict[str, str]],
    views: dict[str, View],
    out_dir: str | Path,
    workers: int | None = None,
    progress: Callable[[int], object] | None = None,
    backend: str | None = None,
) -> dict[str, BuildSummary]:
    """Decode the rows of a prepared manifest into one store per view, reusing unchanged rows."""
    out_dir = Path(out_dir)
    workers = workers or default_workers()
    threads = max(1, (os.cpu_count() or 1) // workers)
    builders = {
        name: StoreBuilder(
            out_dir / f"{name}.h5",
            config=view_config_json(view),
            row_shape=view.row_shape(),
            dtype=np.float32 if view.kind == "audio" else np.uint8,
            attrs={"view": name, "kind": view.kind, "ffmpeg": ffmpeg_version()},
            info_dtypes=INFO_DTYPES,
            checkpoint_s=checkpoint_seconds(),
        )
        for name, view in views.items()
    }
    tasks = []
    for row in rows:
        needed = {name: view for name, view in views.items() if not builders[name].reusable(row["id"], row["sha256"])}
        if needed:
            tasks.append(Task(row["id"], row["video"], needed, threads))
    sha_of = {row["id"]: row["sha256"] for row in rows}
    if backend_name(backend) == "ray":
        results = ray_backend.decode_results(tasks, workers)
    else:
        results = _results(tasks, workers)
    for vid, decoded in results:
        sha = sha_of[vid]
        for name, result in decoded.items():
            if isinstance(result, str):
                builders[name].add_failure(vid, result)
            else:
                builders[name].add(vid, sha, *result)
        if progress:
            progress(1)
    order = [(row["id"], row["sha256"]) for row in rows]
    return {name: builder.finish(order) for name, builder in builders.items()}


_FFMPEG_VERSION: str | None = None


def ffmpeg_version() -> str:
    """The ffmpeg version string, recorded as provenance (not part of the reuse key)."""
    global _FFMPEG_VERSION
    if _FFMPEG_VERSION is None:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30).stdout
        _FFMPEG_VERSION = out.split("\n", 1)[0].split(" Copyright")[0]
    return _FFMPEG_VERSION
