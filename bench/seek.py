"""Decode seconds per video in each seek mode, against what the ffmpeg command costs on the same clips.

    python bench/seek.py [--frames 10] [--repeats 3] [--workers 2] [--folder DIR] [--torchcodec]

Clips: the real ones in ../shared/media, `--folder`'s videos, and two generated 20 s 720x1280 30 fps
H.264 clips shaped like TikToks (one keyframe in 10 s, 3 B-frames in a pyramid between references):
x264 `veryfast`, whose P-frames reference I- and P-frames only (`ref=1`: B-frames can all be skipped),
and `medium`, whose P-frames may reference the pyramid's B-frames (`ref=3`), as the real TikToks'.

Per clip, one thread, medians of `--repeats`:
- anchors, one ffmpeg process each: every frame decoded (`-f null`), non-reference frames skipped
  (`-skip_frame noref`), every B-frame skipped (`-skip_frame bidir`: broken P-frames where they
  reference B-frames, a cost and no more), keyframes only (`-skip_frame nokey`), and ffprobe reading
  every packet (what the probe was before it read files in process);
- reelfeat: the probe, then `MediaFile.frames` for `--frames` frames over the whole video at 224x224
  in each seek mode, and what `auto` resolves to;
- with `--torchcodec` (where it is installed; not a dependency): torchcodec's decoder opening the
  file and `get_frames_played_at` the same times, `approximate` seek mode, at the file's size
  (torchcodec resizes with bilinear only, so its frames cannot be reelfeat's).

Then the decode stage over all the clips (`run_decode`, a frames view of `--frames` frames over the
whole video at 224x224, `seek: auto`, `--workers` processes), against `ffmpeg -f null` of the same
clips run `--workers` at a time on one thread each, largest file first as the stage takes them: the
same cores. Prints markdown tables and one
JSON line of totals, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.clips import RESULTS, real_clips, videos_in  # noqa: E402
from extract import media  # noqa: E402
from extract.core.settings import Settings  # noqa: E402
from extract.media.views import FramesView  # noqa: E402
from extract.stages.decode import run_decode  # noqa: E402

ANCHORS = {"every frame": [], "noref": ["-skip_frame", "noref"], "bidir": ["-skip_frame", "bidir"]}
ANCHORS["keyframes only"] = ["-skip_frame", "nokey"]


def tiktok_like(preset: str) -> Path:
    path = RESULTS / f"seek_20s_720x1280_gop300_bf3_{preset}.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        source = "testsrc2=size=720x1280:rate=30:duration=20"
        x264 = "keyint=300:min-keyint=300:scenecut=0:b-pyramid=normal"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", preset]
            + ["-bf", "3", "-x264-params", x264, "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )
    return path


def ffmpeg_seconds(path: Path, skip: list[str]) -> float:
    start = time.perf_counter()
    cmd = ["ffmpeg", "-v", "error", "-threads", "1", *skip, "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def ffprobe_seconds(path: Path) -> float:
    start = time.perf_counter()
    cmd = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_entries", "packet=stream_index,pts_time"]
    subprocess.run([*cmd, "-of", "json", str(path)], check=True, capture_output=True)
    return time.perf_counter() - start


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def reelfeat_seconds(path: Path, view: FramesView, seek: str) -> tuple[float, float]:
    """(seconds for the probe and the frames in one opening, the largest shift from a planned frame)."""
    start = time.perf_counter()
    with media.MediaFile(path, 300) as source:
        meta = source.probe()
        planned, _ = view.plan(meta)
        _, found = source.frames(planned, view.size, view.resize, seek, view.max_shift)
    seconds = time.perf_counter() - start
    return seconds, float(np.abs(meta.frame_times[found] - meta.frame_times[planned]).max())


def torchcodec_seconds(path: Path, view: FramesView) -> float:
    from torchcodec.decoders import VideoDecoder

    start = time.perf_counter()
    decoder = VideoDecoder(str(path), seek_mode="approximate", num_ffmpeg_threads=1)
    span = decoder.metadata.duration_seconds or 0.0
    times = [(i + 0.5) * span / view.num_frames for i in range(view.num_frames)]
    decoder.get_frames_played_at(times)
    return time.perf_counter() - start


def stage_seconds(clips: list[Path], view: FramesView, workers: int) -> tuple[float, float]:
    """(the decode stage over the clips, ffmpeg -f null over them `workers` at a time), seconds."""
    rows = [{"id": f"v{i:03d}", "video": str(path), "sha256": str(i)} for i, path in enumerate(clips)]
    with tempfile.TemporaryDirectory(prefix="reelfeat-seek-") as out:
        stage, _ = timed(lambda: run_decode(rows, {"frames": view}, out, settings=Settings(workers=workers)))
    largest_first = sorted(clips, key=lambda p: p.stat().st_size, reverse=True)  # as the stage orders them
    with ThreadPoolExecutor(workers) as pool:
        command, _ = timed(lambda: list(pool.map(lambda p: ffmpeg_seconds(p, []), largest_first)))
    return stage, command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--folder", type=Path, help="also the videos in this folder")
    parser.add_argument("--torchcodec", action="store_true", help="also torchcodec, where it is installed")
    args = parser.parse_args()
    clips = [tiktok_like("veryfast"), tiktok_like("medium"), *real_clips(), *videos_in(args.folder or Path("-"))]
    view = FramesView(num_frames=args.frames, max_seconds=None, size=(224, 224))
    median = statistics.median
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores; {media.decoder_version()}; one thread per decoder\n")
    columns = [*ANCHORS, "ffprobe", "exact", "fast", "keyframes", "auto"] + (["torchcodec"] if args.torchcodec else [])
    print("| clip | length | keyframes | skip | " + " | ".join(columns) + " | auto is |")
    print("|---|---|---|---|" + "---|" * (len(columns) + 1))
    totals = dict.fromkeys(columns, 0.0)
    for path in clips:
        meta = media.probe(path)
        planned, _ = view.plan(meta)
        auto = view.seek_for(meta, planned)
        cells = {
            name: median(ffmpeg_seconds(path, skip) for _ in range(args.repeats)) for name, skip in ANCHORS.items()
        }
        cells["ffprobe"] = median(ffprobe_seconds(path) for _ in range(args.repeats))
        shifts = {}
        for seek in ("exact", "fast", "keyframes"):
            runs = [reelfeat_seconds(path, view, seek) for _ in range(args.repeats)]
            cells[seek], shifts[seek] = median(r[0] for r in runs), runs[0][1]
        cells["auto"] = cells[auto]
        if args.torchcodec:
            cells["torchcodec"] = median(torchcodec_seconds(path, view) for _ in range(args.repeats))
        for name in columns:
            totals[name] += cells[name]
        shown = [f"{cells[n]:.3f}" + (f" ({shifts[n]:.2f} s)" if n in ("fast", "keyframes") else "") for n in columns]
        print(
            f"| {path.name} | {meta.duration:.1f} s | {len(meta.keyframe_times)} | {meta.skip} | "
            + " | ".join(shown)
            + f" | {auto} |"
        )
    print("| **all** | | | | " + " | ".join(f"**{totals[n]:.2f}**" for n in columns) + " | |")
    stages = {}
    for name, chosen in (("real clips", clips[2:]), ("all clips", clips)):
        runs = [stage_seconds(chosen, view, args.workers) for _ in range(args.repeats)]
        stages[name] = (median(s for s, _ in runs), median(c for _, c in runs))
        print(
            f"\ndecode stage, {name} ({len(chosen)}), {args.workers} workers: {stages[name][0]:.2f} s; "
            f"ffmpeg every frame on the same cores: {stages[name][1]:.2f} s; {stages[name][0] / stages[name][1]:.2f}x"
        )
    record = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "decoder": media.decoder_version(),
        "clips": len(clips),
        "frames": args.frames,
        **{f"{name} s": round(seconds, 3) for name, seconds in totals.items()},
        "auto over every frame": round(totals["auto"] / totals["every frame"], 3),
        "keyframes over keyframes only": round(totals["keyframes"] / totals["keyframes only"], 3),
        **{f"stage over every frame, {name}": round(s / c, 3) for name, (s, c) in stages.items()},
        **{f"stage s, {name}": round(s, 3) for name, (s, _) in stages.items()},
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
