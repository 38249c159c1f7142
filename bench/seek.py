"""Decode seconds per video in each seek mode, on real TikToks and a generated clip shaped like them.

    python bench/seek.py [--frames 10] [--repeats 3] [--threads 1]

For each clip: probe once, then `extract.media.decode_frames` for `--frames` frames spread over the
whole video in each seek mode (`exact`, `fast`, `keyframes`; and what `auto`, the frames views'
default, resolves to), one ffmpeg thread by default (what a
decode worker gets on a machine with as many workers as cores). Medians of the repeats, with how far
the frames taken lie from the planned ones, and ffmpeg decoding every frame (`-f null`) as the
ceiling. Clips: the real ones in ../shared/media whose keyframes are at least 2 s apart, and a
generated 20 s 720x1280 30 fps H.264 clip with one keyframe in 10 s and 3 B-frames between
references (x264 b-pyramid), as real TikToks have. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.clips import RESULTS, real_clips  # noqa: E402
from extract import media  # noqa: E402
from extract.views import FramesView  # noqa: E402


def tiktok_like() -> Path:
    path = RESULTS / "seek_20s_720x1280_gop300_bf3.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        source = "testsrc2=size=720x1280:rate=30:duration=20"
        x264 = "keyint=300:min-keyint=300:scenecut=0:b-pyramid=normal"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", "veryfast"]
            + ["-bf", "3", "-x264-params", x264, "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )
    return path


def full_decode_seconds(path: Path, threads: int) -> float:
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", str(threads), "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    clips = [tiktok_like(), *real_clips()]
    view = FramesView(num_frames=args.frames, max_seconds=None, size=(224, 224))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.threads} thread(s)")
    print("| clip | length | keyframes | every frame | exact | fast (max shift) | keyframes (max shift) | auto is |")
    print("|---|---|---|---|---|---|---|---|")
    for path in clips:
        meta = media.probe(path)
        if meta.duration / max(1, len(meta.keyframe_times)) < 2.0:
            continue  # short keyframe intervals: every mode is cheap, nothing to compare
        planned, _ = view.plan(meta)
        cells = []
        for seek in ("exact", "fast", "keyframes"):
            runs, shift = [], 0.0
            for _ in range(args.repeats):
                start = time.perf_counter()
                _, found = media.decode_frames(
                    path, meta, planned, view.size, view.resize, threads=args.threads, seek=seek
                )
                runs.append(time.perf_counter() - start)
                shift = float(np.abs(meta.frame_times[found] - meta.frame_times[planned]).max())
            cells.append(f"{statistics.median(runs):.2f} s" + (f" ({shift:.2f} s)" if seek != "exact" else ""))
        full = statistics.median(full_decode_seconds(path, args.threads) for _ in range(args.repeats))
        print(
            f"| {path.name} | {meta.duration:.1f} s {meta.width}x{meta.height} | {len(meta.keyframe_times)} | "
            f"{full:.2f} s | {' | '.join(cells)} | {view.seek_for(meta, planned)} |"
        )


if __name__ == "__main__":
    main()
