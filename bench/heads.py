"""Train every head preset of params.yaml for its epochs on cached features of 1,000 synthetic videos,
against re-running its backbones every epoch, as an end-to-end seed training does.

    python bench/heads.py [--videos 1000] [--repeats 3] [--cost-videos 8]

Feature stores are written with the widths and row counts the demo's backbones give (BERT 768 x 1,
ResNet50 2048 x 10 frames, R(2+1)D 512 x 1 clip, VGGish 128 x 3 windows, Whisper base 512 x 150
rows for 3 s, BERT tokens 768 x 20); labels are random. Reported: seconds of `heads.train.train`,
feature loading included, median of the repeats. Targets: risky_mlp under 5 s, mvt_tagger under 60 s.

Re-running: the seconds per video of decoding (params.yaml's views) and of each backbone are
measured on `--cost-videos` generated 3 s 720x1280 clips with 20-word captions, through
reelfeat's own batched stages (random weights with the real models' shapes; Whisper base without
its transcript decoding, BERT on 128 words for transcripts). A seed training pays that for every
train and val video in every epoch, plus the head: ratio = (epochs x videos x cost + head) / head.
Both simplifications make the ratio a lower bound: the seeds decode every frame and batch less.
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

from bench import weights as random_weights  # noqa: E402
from bench.clips import RESULTS, generated_clip  # noqa: E402
from extract.backbones import build_backbone  # noqa: E402
from extract.stages.decode import run_decode, views_from_params  # noqa: E402
from extract.stages.features import run_features  # noqa: E402
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
# What each feature store costs to recompute: the backbone run that writes it (bert_tokens comes
# from the same BERT forward pass as bert in an end-to-end model, so it is counted once).
COST_OF_STORE = {name: name for name in SHAPES} | {"bert_tokens": "bert"}
COST_CLIP_SECONDS = 3  # the audio length the Whisper and VGGish shapes above assume


def make_data(folder: Path, videos: int) -> Path:
    rng = np.random.default_rng(0)
    for name, (dim, rows) in SHAPES.items():
        attrs = {"kind": "features", "backbone": name, "weights": json.dumps({"sha256": "bench"}), "config": "{}"}
        with StoreWriter(folder / name, row_shape=(dim,), dtype=np.float16, attrs=attrs) as writer:
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


def seconds_per_video(folder: Path, count: int) -> dict[str, float]:
    """Decode and backbone seconds per video, through reelfeat's stages; model loading left out."""
    clips = [
        generated_clip(RESULTS / "heads_cost" / f"h{i:02d}.mp4", COST_CLIP_SECONDS, "720x1280", tone_hz=220 + i)
        for i in range(count)
    ]
    rows = [{"id": c.stem, "video": str(c), "split": "train", "sha256": c.stem, "text": ""} for c in clips]
    captions, transcripts = folder / "captions.csv", folder / "transcripts.csv"
    for path, words in ((captions, 20), (transcripts, 128)):
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "text": " ".join(["word"] * words)} for row in rows)
    views = views_from_params(yaml.safe_load((ROOT / "params.yaml").read_text())["decode"])
    decoded = folder / "decoded"
    start = time.perf_counter()
    run_decode(rows, views, decoded)
    costs = {"decode": (time.perf_counter() - start) / count}
    bert = random_weights.bert_base_folder(folder)
    backbones = {
        "resnet50": {"input": decoded / "frames", "weights": random_weights.torchvision_file(folder, "resnet50")},
        "r2plus1d_18": {
            "input": decoded / "clips",
            "weights": random_weights.torchvision_file(folder, "r2plus1d_18"),
        },
        "vggish": {"input": decoded / "audio", "weights": random_weights.vggish_folder(folder)},
        "whisper": {
            "input": decoded / "audio",
            "weights": random_weights.whisper_base_file(folder),
            "transcribe": False,
        },
        "bert": {"input": captions, "weights": bert, "max_tokens": 50},
        "bert_transcript": {"model": "bert", "input": transcripts, "weights": bert, "max_tokens": 128},
    }
    for name, values in backbones.items():
        values = {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}
        start = time.perf_counter()
        build_backbone(name, values, torch.device("cpu"))  # run_features loads it once too: timed apart
        load = time.perf_counter() - start
        start = time.perf_counter()
        run_features(name, values, folder / f"cost_{name}", device=torch.device("cpu"))
        costs[name] = max(0.0, time.perf_counter() - start - load) / count
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cost-videos", type=int, default=8, help="clips the per-video costs are measured on")
    args = parser.parse_args()
    presets = yaml.safe_load((ROOT / "params.yaml").read_text())["heads"]
    print(
        f"machine: {platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.videos} videos; median of {args.repeats}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        costs = seconds_per_video(folder, args.cost_videos)
        print(f"\nSeconds per video, from {args.cost_videos} clips of {COST_CLIP_SECONDS} s:\n")
        print("| step | s/video |\n|---|---|")
        print("\n".join(f"| {name} | {seconds:.3f} |" for name, seconds in costs.items()))
        manifest = make_data(folder, args.videos)
        with open(manifest, newline="") as handle:
            seen_per_epoch = sum(1 for row in csv.DictReader(handle) if row["split"] in ("train", "val"))
        print(f"\nRe-running: decode + the preset's backbones for {seen_per_epoch} train+val videos per epoch.\n")
        print("| preset | task | epochs | batch | train s | re-run s/video | re-run every epoch s | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for name, values in presets.items():
            config = head_config(name, values)
            inputs = tuple(dataclasses.replace(i, store=str(folder / Path(i.store).name)) for i in config.inputs)
            config = dataclasses.replace(config, inputs=inputs, manifest=str(manifest))
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                train(config, folder / "heads" / name)
                seconds.append(time.perf_counter() - start)
            head = statistics.median(seconds)
            backbones = {COST_OF_STORE[Path(i.store).stem] for i in config.inputs}
            per_video = costs["decode"] + sum(costs[b] for b in backbones)
            rerun = config.epochs * seen_per_epoch * per_video + head
            print(
                f"| {name} | {config.task} | {config.epochs} | {config.batch_size} | {head:.2f} | {per_video:.3f} "
                f"| {rerun:,.0f} | {rerun / head:,.0f}x |"
            )


if __name__ == "__main__":
    main()
