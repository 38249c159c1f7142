"""Sampled decode against decoding every frame: same output frames, wall time and peak memory.

    python bench/decode.py [--seconds 60] [--repeats 3]

Generates (once, cached in bench/results/) a 60 s 720x1280 30 fps H.264 clip with a keyframe
every 2 s, then for two views (16 frames over the first 10 s, the default; 16 frames over the
whole minute) times:
- sampled: `extract.media.decode_frames`, seeking to each run of wanted frames;
- full: one ffmpeg pass decoding, scaling and converting every frame, keeping the wanted ones
  (streamed frame by frame, so its memory is bounded too: the fairest full decode).
Each variant runs in a fresh process; peak memory is the max RSS of that process and its ffmpeg
children. Both must return identical frames, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.clips import RESULTS, generated_clip  # noqa: E402
from extract import media  # noqa: E402
from extract.media.views import FramesView  # noqa: E402

VIEWS = {
    "16 frames / first 10 s": FramesView(num_frames=16, max_seconds=10, size=(224, 224)),
    "16 frames / whole clip": FramesView(num_frames=16, max_seconds=None, size=(224, 224)),
}


def make_clip(seconds: int) -> Path:
    return generated_clip(
        RESULTS / f"bench_{seconds}s_720x1280_30fps_gop60.mp4", seconds, "720x1280", preset="veryfast"
    )


def full_decode(path: Path, meta: media.Probe, wanted, view: FramesView) -> np.ndarray:
    """Decode, scale and convert every frame in order with the ffmpeg command; keep the wanted ones."""
    height, width = view.size
    scale = f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=bicubic,crop={width}:{height}"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", f"{scale},setsar=1"]
    cmd += ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    frame_bytes = view.size[0] * view.size[1] * 3
    keep = {int(i) for i in wanted}
    kept = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        index = 0
        while chunk := proc.stdout.read(frame_bytes):
            if index in keep:
                kept[index] = np.frombuffer(chunk, np.uint8).reshape(*view.size, 3)
            index += 1
    return np.stack([kept[int(i)] for i in wanted])


def run_one(variant: str, path: Path, view_name: str) -> dict:
    view = VIEWS[view_name]
    meta = media.probe(path)
    wanted, _ = view.plan(meta)
    start = time.perf_counter()
    if variant == "sampled":
        frames, _ = media.decode_frames(path, meta, wanted, view.size, view.resize, threads=os.cpu_count() or 1)
    else:
        frames = full_decode(path, meta, wanted, view)
    wall = time.perf_counter() - start
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    np.save(RESULTS / f"frames_{variant}.npy", frames)
    return {"wall_s": wall, "peak_mb": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: variant, clip, view
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]), args.one[2])))
        return
    clip = make_clip(args.seconds)
    print(
        f"clip: {clip.name}; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {media_version()}"
    )
    print("| view | variant | wall s (median) | peak MB | speedup |")
    print("|---|---|---|---|---|")
    for view_name in VIEWS:
        results = {}
        for variant in ("full", "sampled"):
            runs = [
                json.loads(
                    subprocess.run(
                        [sys.executable, __file__, "--one", variant, str(clip), view_name],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                )
                for _ in range(args.repeats)
            ]
            results[variant] = {
                "wall_s": statistics.median(r["wall_s"] for r in runs),
                "peak_mb": max(r["peak_mb"] for r in runs),
            }
        same = np.array_equal(np.load(RESULTS / "frames_full.npy"), np.load(RESULTS / "frames_sampled.npy"))
        if not same:
            raise SystemExit(f"{view_name}: sampled frames differ from the full decode")
        speedup = results["full"]["wall_s"] / results["sampled"]["wall_s"]
        for variant in ("full", "sampled"):
            r = results[variant]
            print(
                f"| {view_name} | {variant} | {r['wall_s']:.2f} | {r['peak_mb']:.0f} | "
                f"{f'{speedup:.1f}x' if variant == 'sampled' else ''} |"
            )


def media_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return out.split("\n", 1)[0].split(" Copyright")[0]


if __name__ == "__main__":
    main()
