"""Train every head preset of params.yaml for its epochs on cached features of 1,000 synthetic videos.

    python bench/heads.py [--videos 1000] [--repeats 3]

Feature stores are written with the widths and row counts the demo's backbones give (BERT 768 x 1,
ResNet50 2048 x 10 frames, R(2+1)D 512 x 1 clip, VGGish 128 x 3 windows, Whisper base 512 x 150
rows for 3 s, BERT tokens 768 x 20); labels are random. Reported: seconds of `heads.train.train`,
feature loading included, median of the repeats. Targets: risky_mlp under 5 s, mvt_tagger under 60 s.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from extract.store import StoreWriter  # noqa: E402
from heads.config import head_config  # noqa: E402
from heads.train import train  # noqa: E402

SHAPES = {
    "bert": (768, 1),
    "resnet50": (2048, 10),
    "r2plus1d_18": (512, 1),
    "vggish": (128, 3),
    "whisper": (512, 150),
    "bert_tokens": (768, 20),
    "bert_transcript": (768, 1),
}
TAGS = ["striped", "music", "talking", "bright"]


def make_data(folder: Path, videos: int) -> Path:
    rng = np.random.default_rng(0)
    for name, (dim, rows) in SHAPES.items():
        attrs = {"kind": "features", "backbone": name, "weights": json.dumps({"sha256": "bench"}), "config": "{}"}
        with StoreWriter(folder / f"{name}.h5", row_shape=(dim,), dtype=np.float16, attrs=attrs) as writer:
            for i in range(videos):
                writer.add(
                    f"v{i:04d}", rng.normal(size=(rows, dim)).astype(np.float16), np.arange(rows, dtype=np.float32), "s"
                )
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "id",
                "split",
                "risky",
                "tags",
                "action",
                "views",
                "intensity_joy",
                "intensity_energy",
                "intensity_surprise",
            ]
        )
        for i in range(videos):
            split = "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test")
            tags = ",".join(t for t in TAGS if rng.random() < 0.4)
            writer.writerow(
                [
                    f"v{i:04d}",
                    split,
                    int(rng.random() < 0.5),
                    tags,
                    rng.choice(["a", "b", "c", "d"]),
                    round(float(rng.normal(3000, 800)), 1),
                    *np.round(rng.random(3), 3),
                ]
            )
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    presets = yaml.safe_load((ROOT / "params.yaml").read_text())["heads"]
    print(
        f"machine: {platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.videos} videos; median of {args.repeats}"
    )
    print("| preset | task | epochs | batch | train s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_data(folder, args.videos)
        for name, values in presets.items():
            config = head_config(name, values)
            inputs = tuple(dataclasses.replace(i, store=str(folder / Path(i.store).name)) for i in config.inputs)
            config = dataclasses.replace(config, inputs=inputs, manifest=str(manifest))
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                train(config, folder / "heads" / name)
                seconds.append(time.perf_counter() - start)
            print(
                f"| {name} | {config.task} | {config.epochs} | {config.batch_size} | {statistics.median(seconds):.2f} |"
            )


if __name__ == "__main__":
    main()
