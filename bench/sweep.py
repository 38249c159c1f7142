"""What a sweep costs: `python -m heads train` as the `train@<head>` stage runs it, with 1, 4 and 16
configurations (learning rate x weight decay) trained in one pass over shared batches.

    python bench/sweep.py [--videos 2000] [--rows 10] [--dim 2048] [--pool mean] [--hidden 512]
                          [--epochs 10] [--repeats 3]

A feature store of `--videos` videos of `--rows` rows of `--dim` float16 values (ResNet50's, 10 frames)
whose class (5 classes) shows in every row, split 70/15/15. The head: `--pool` over the rows (mean:
an MLP of `--hidden` widths, default one layer of 512, none for a linear probe; transformer or
attentive_probe: that sequence encoder, then a linear layer), `--epochs` epochs, batch 32. Timed,
medians of `--repeats`: the whole process, start-up and the store's reads included, and each
configuration's own steps (sweep.json's seconds). Prints a markdown table and one JSON line, with
the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peer import machine  # noqa: E402
from extract.store import StoreWriter  # noqa: E402

GRIDS = {
    1: {},
    4: {"lr": [1e-4, 3e-4, 1e-3, 3e-3]},
    16: {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "weight_decay": [0.0, 1e-4, 1e-3, 1e-2]},
}


def write_project(folder: Path, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, args.videos)
    centres = rng.normal(size=(5, args.dim)).astype(np.float32)
    attrs = {"config": json.dumps({"backbone": {"model": "bench"}})}
    times = np.arange(args.rows, dtype=np.float32)
    with StoreWriter(folder / "store", row_shape=(args.dim,), dtype=np.float16, attrs=attrs) as writer:
        for i in range(args.videos):
            rows = centres[labels[i]] * 0.3 + rng.normal(size=(args.rows, args.dim)).astype(np.float32)
            writer.add(f"v{i}", rows.astype(np.float16), times)
    write_manifest(folder / "manifest.csv", labels, rng)


def write_manifest(path: Path, labels: np.ndarray, rng: np.random.Generator) -> None:
    """A prepared manifest of videos v0, v1, ... with their class `label`, split 70/15/15 at random."""
    splits = rng.choice(["train", "val", "test"], len(labels), p=[0.7, 0.15, 0.15])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split", "label"])
        writer.writerows(
            [f"v{i}", split, f"c{label}"] for i, (split, label) in enumerate(zip(splits, labels, strict=True))
        )


def head_params(folder: Path, args: argparse.Namespace, k: int) -> Path:
    pooled = args.pool == "mean"
    head = {
        "task": "multi_class",
        "target": "label",
        "manifest": str(folder / "manifest.csv"),
        "inputs": [{"store": str(folder / "store"), "pool": args.pool, "max_len": args.rows}],
        "hidden": args.hidden if pooled else [],
        "dropout": 0.2,
        "epochs": args.epochs,
        "batch_size": 32,
        "bootstrap": 0,
    }
    if args.pool == "transformer":
        head["inputs"][0] |= {"hidden": 128, "heads": 4}
    if GRIDS[k]:
        head["sweep"] = GRIDS[k]
    path = folder / f"params_{k}.yaml"
    path.write_text(yaml.safe_dump({"heads": {"bench": head}}), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--pool", default="mean", choices=["mean", "transformer", "attentive_probe"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="*", default=[512], help="MLP widths of a mean-pooled head")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="reelfeat-sweep-") as tmp:
        folder = Path(tmp)
        write_project(folder, args)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for k in GRIDS:
            params = head_params(folder, args, k)
            walls, steps = [], []
            for _ in range(args.repeats):
                command = [sys.executable, "-m", "heads", "--params", str(params), "train", "bench"]
                start = time.perf_counter()
                subprocess.run([*command, "--out", str(folder / "head")], check=True, env=env, capture_output=True)
                walls.append(time.perf_counter() - start)
                table = json.loads((folder / "head" / "sweep.json").read_text(encoding="utf-8"))
                steps.append(sum(row["seconds"] for row in table["rows"]))
            results[k] = {"process_s": statistics.median(walls), "configurations_s": statistics.median(steps)}
    one = results[1]["process_s"]
    host = machine()
    shape = f"{args.videos} videos x {args.rows} rows x {args.dim}"
    print(f"sweep on {shape}, {args.pool}, {args.epochs} epochs ({host['cpu']}, {host['cores']} cores)")
    print("| configurations | train process s | their own steps s | x one |")
    print("|---|---|---|---|")
    for k, found in results.items():
        print(f"| {k} | {found['process_s']:.2f} | {found['configurations_s']:.2f} | {found['process_s'] / one:.2f} |")
    print(json.dumps({"args": vars(args), "machine": host, "results": results}))


if __name__ == "__main__":
    main()
