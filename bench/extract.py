"""ResNet50 frames per second: end to end (decoded store to feature store) against the model alone.

    python bench/extract.py [--videos 24] [--frames 10] [--repeats 5] [--device cpu]

Both sides see the same frames, the same weights (random: the speed does not depend on them;
saved to a file and loaded through the production loader) and the same batch size.
- model only: frames already transformed, in memory, as tensors; only forward passes are timed;
- end to end: `extract.stages.features.run_features` from a decoded frames store to a new feature store:
  store reads, weights' transforms in loader workers, batching across videos, forward passes,
  HDF5 writes. The model load is timed apart and left out.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.weights import torchvision_file  # noqa: E402
from extract.backbones import build_backbone, compute_dtype  # noqa: E402
from extract.stages.features import run_features  # noqa: E402
from extract.store import StoreWriter  # noqa: E402


def make_inputs(folder: Path, videos: int, frames: int) -> tuple[Path, Path]:
    weights = torchvision_file(folder, "resnet50")
    store = folder / "frames"
    rng = np.random.default_rng(0)
    attrs = {"kind": "frames", "config": '{"view": {"type": "frames"}}'}
    with StoreWriter(store, row_shape=(224, 224, 3), dtype=np.uint8, attrs=attrs) as writer:
        for i in range(videos):
            rows = rng.integers(0, 256, (frames, 224, 224, 3), dtype=np.uint8)
            writer.add(f"v{i:03d}", rows, np.arange(frames, dtype=np.float32), f"sha{i}")
    return weights, store


def model_only(values: dict, store: Path, batch: int, device: torch.device) -> float:
    from extract.store import StoreReader

    backbone = build_backbone("resnet50", values, device)
    reader = StoreReader(store)
    frames = torch.from_numpy(np.concatenate([reader.get(vid)[0] for vid in reader.ids])).permute(0, 3, 1, 2)
    tensors = backbone.transforms(frames)  # preprocessing done before the clock starts
    backbone.embed(tensors[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(tensors), batch):
        backbone.embed(tensors[i : i + batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(tensors) / (time.perf_counter() - start)


def end_to_end(values: dict, store: Path, batch: int, device: torch.device, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    load_start = time.perf_counter()
    build_backbone("resnet50", values, device)
    load = time.perf_counter() - load_start  # run_features loads the model once too: not part of throughput
    start = time.perf_counter()
    summary = run_features("resnet50", values, out, device=device, batch_size=batch)
    wall = time.perf_counter() - start - load
    from extract.store import StoreReader

    return StoreReader(out).num_rows / wall if summary.computed else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights, store = make_inputs(folder, args.videos, args.frames)
        values = {"input": str(store), "weights": str(weights), "dtype": "float16"}
        model, e2e = [], []
        for _ in range(args.repeats):  # alternated, so drift in the machine's speed hits both alike
            model.append(model_only(values, store, args.batch, device))
            e2e.append(end_to_end(values, store, args.batch, device, folder / "out"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    precision = str(compute_dtype("auto", device)).removeprefix("torch.")
    print(
        f"device: {name}, {os.cpu_count()} cores, {precision}, torch {torch.__version__}, torch threads "
        f"{torch.get_num_threads()}; {args.videos} videos x {args.frames} frames, batch {args.batch}, "
        f"median of {args.repeats}"
    )
    m, e = statistics.median(model), statistics.median(e2e)
    print("| path | frames/s |\n|---|---|")
    print(f"| model only (tensors in memory) | {m:.1f} |\n| end to end (store to store) | {e:.1f} |")
    print(f"end to end / model only: {100 * e / m:.0f}%")


if __name__ == "__main__":
    main()
