"""Scaling: wall time of decode + ResNet50 extraction for growing numbers of clips (linear is the
goal), and peak memory decoding one long 1080p clip (bounded is the goal). Local and Ray backends.

    python bench/scaling.py [--counts 10 100 400] [--long-seconds 600] [--backends local ray] [--repeats 3]

Clips: 5 s 360x640 30 fps H.264 with audio, generated once into bench/results/. The long clip is
1080x1920 30 fps with a keyframe every 2 s; its peak memory is the max RSS of a fresh process
decoding the default views (10 frames and a 16-frame clip over the first 10 s, audio of all of it)
plus its ffmpeg children. Each run starts from empty stores; medians of the repeats.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.clips import RESULTS, generated_clip  # noqa: E402
from bench.weights import torchvision_file  # noqa: E402
from extract.stages.decode import run_decode, views_from_params  # noqa: E402

VIEWS = {
    "frames": {"type": "frames", "num_frames": 10, "max_seconds": 10, "size": [224, 224]},
    "audio": {"type": "audio"},
}


def clip(i: int) -> Path:
    return generated_clip(RESULTS / "scaling" / f"c{i:03d}.mp4", 5, "360x640", tone_hz=200 + i)


def pipeline(count: int, backend: str, weights: Path) -> float:
    """Seconds to decode and extract `count` clips into empty stores (deleted afterwards)."""
    from extract.stages.features import run_features  # torch stays out of the peak-memory child

    rows = [{"id": f"c{i:03d}", "video": str(clip(i)), "sha256": str(i)} for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        run_decode(rows, views_from_params({"views": VIEWS}), work / "decoded", backend=backend)
        run_features(
            "resnet50",
            {"input": str(work / "decoded" / "frames"), "weights": str(weights)},
            work / "resnet50",
            backend=backend,
        )
        return time.perf_counter() - start


def ray_start_seconds() -> float:
    """Starting the local Ray instance, paid once per process: reported apart from per-clip time."""
    from extract.executor.ray_cluster import ray_module

    start = time.perf_counter()
    ray_module()
    return time.perf_counter() - start


def long_clip(seconds: int) -> Path:
    return generated_clip(RESULTS / f"long_{seconds}s_1080x1920.mp4", seconds, "1080x1920", tone_hz=300)


def peak_memory_child(path: Path) -> dict:
    """Run in a fresh process: decode the default views of one clip; report wall time and peak RSS."""
    views = views_from_params(yaml.safe_load((ROOT / "params.yaml").read_text())["decode"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_decode([{"id": "long", "video": str(path), "sha256": "x"}], views, Path(tmp), workers=1)
        wall = time.perf_counter() - start
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    return {"wall_s": round(wall, 2), "peak_mb": round(peak / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 400])
    parser.add_argument("--long-seconds", type=int, default=600)
    parser.add_argument("--backends", nargs="+", default=["local", "ray"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak", help=argparse.SUPPRESS)  # internal: measure one clip in this process
    args = parser.parse_args()
    if args.peak:
        print(json.dumps(peak_memory_child(Path(args.peak))))
        return
    if args.long_seconds:  # first, while this process is small: Linux keeps a forked child's peak RSS across exec
        path = long_clip(args.long_seconds)
        runs = []
        for _ in range(args.repeats):
            done = subprocess.run(
                [sys.executable, __file__, "--peak", str(path)], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        long_clip_record = {
            "seconds": args.long_seconds,
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "peak_mb": statistics.median(r["peak_mb"] for r in runs),
            "peak_mb_max": max(r["peak_mb"] for r in runs),
            "runs": args.repeats,
        }
        print(json.dumps(long_clip_record), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = torchvision_file(Path(tmp), "resnet50")
        for backend in args.backends:
            if backend == "ray":
                print(json.dumps({"ray_start_s": round(ray_start_seconds(), 1)}), flush=True)
            for count in args.counts:
                seconds = statistics.median(pipeline(count, backend, weights) for _ in range(args.repeats))
                record = {
                    "backend": backend,
                    "clips": count,
                    "wall_s": round(seconds, 1),
                    "s_per_clip": round(seconds / count, 3),
                    "runs": args.repeats,
                }
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
