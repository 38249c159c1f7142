"""reelfeat against a naive pipeline written the way the seed projects do it, same videos, same backbones.

    python bench/naive.py [--videos 20] [--seconds 10] [--repeats 3]

Naive, per video and per backbone: decode every frame at full resolution to RGB (as OpenCV's
VideoCapture loop does), keep the N frames the model needs, apply the weights' transforms, run
the model on that one video in fp32; the next backbone decodes the video again.
reelfeat: `decode` (sampled, both views at once) then `extract@resnet50` and `extract@r2plus1d_18`
from the stores, batched across videos. Backbones: ResNet50 on 16 frames of the first 10 s,
R(2+1)D-18 on one 16-frame clip of the first 10 s; random weights (speed does not depend on them).
The two sides alternate; each reelfeat run starts from empty stores; medians of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from bench.clips import RESULTS, generated_clip  # noqa: E402
from bench.weights import torchvision_file  # noqa: E402
from extract import media  # noqa: E402
from extract.stages.decode import run_decode, views_from_params  # noqa: E402
from extract.stages.features import run_features  # noqa: E402

VIEWS = {
    "frames": {"type": "frames", "num_frames": 16, "max_seconds": 10, "size": [224, 224]},
    "clips": {"type": "clips", "num_clips": 1, "clip_len": 16, "max_seconds": 10, "size": [128, 171]},
}
BACKBONES = {"resnet50": "frames", "r2plus1d_18": "clips"}


def make_videos(count: int, seconds: int) -> list[Path]:
    folder = RESULTS / f"naive_{count}x{seconds}s"
    return [generated_clip(folder / f"v{i:02d}.mp4", seconds, "720x1280") for i in range(count)]


def all_frames(path: Path) -> np.ndarray:
    """Every frame at full resolution, RGB: what a VideoCapture read loop holds."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-nostdin",
            "-i",
            str(path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-fps_mode",
            "passthrough",
            "pipe:",
        ],
        capture_output=True,
        check=True,
    ).stdout
    with media.MediaFile(path, 300) as source:
        info = source.info()
    return np.frombuffer(raw, np.uint8).reshape(-1, info["height"], info["width"], 3)


def naive(videos: list[Path], weights: dict[str, Path]) -> float:
    models = {}
    for name, path in weights.items():
        model = torchvision.models.get_model(name, weights=None)
        model.load_state_dict(torch.load(path, weights_only=True))
        model.fc = torch.nn.Identity()
        models[name] = (model.eval(), torchvision.models.get_model_weights(name).DEFAULT.transforms())
    start = time.perf_counter()
    with torch.inference_mode():
        for video in videos:
            meta = media.probe(video)
            for name, (model, transforms) in models.items():
                frames = all_frames(video)  # decoded again for every backbone
                first_10s = frames[: int(10 * meta.fps)]
                keep = np.linspace(0, len(first_10s) - 1, 16).round().astype(int)
                picked = torch.from_numpy(first_10s[keep].copy()).permute(0, 3, 1, 2)
                batch = transforms(picked) if BACKBONES[name] == "frames" else transforms(picked)[None]
                model(batch.float())  # one video per forward pass, fp32
    return time.perf_counter() - start


def reelfeat(videos: list[Path], weights: dict[str, Path], work: Path) -> float:
    rows = [{"id": v.stem, "video": str(v), "sha256": v.stem} for v in videos]
    start = time.perf_counter()
    run_decode(rows, views_from_params({"views": VIEWS}), work / "decoded")
    for name, view in BACKBONES.items():
        values = {"input": str(work / "decoded" / view), "weights": str(weights[name])}
        run_features(name, values, work / name)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    videos = make_videos(args.videos, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = {name: torchvision_file(work, name) for name in BACKBONES}
        ours, theirs = [], []
        for repeat in range(args.repeats):
            ours.append(reelfeat(videos, weights, work / f"run{repeat}"))
            theirs.append(naive(videos, weights))
    result = {
        "videos": args.videos,
        "seconds": args.seconds,
        "naive_s": round(statistics.median(theirs), 1),
        "reelfeat_s": round(statistics.median(ours), 1),
        "speedup": round(statistics.median(theirs) / statistics.median(ours), 2),
        "runs": args.repeats,
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
