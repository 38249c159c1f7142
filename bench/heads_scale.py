"""Heads at scale: a BiLSTM tagger on PaddleVideo-sized features, trained and evaluated through the
CLI, with each command's wall time and peak memory against the size of the stores it reads.

    python bench/heads_scale.py [--videos 12000] [--tags 300] [--epochs 3]

Per video 40 rows of 2048-d (image) and 40 rows of 128-d (audio), float32 as `import-paddle` writes
them (3.9 GiB for 12,000 videos), and 1 to 3 of `--tags` labels; each label adds its own direction
to the rows, so the tagger has something to learn. Stores are written once into
bench/results/heads_scale/. Peak memory is the max resident size of the `python -m heads` process
(os.wait4). Also times threshold tuning and the metrics with 1,000 bootstrap resamples on
`--metrics-videos` x `--tags` random scores. Prints two JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.clips import RESULTS  # noqa: E402
from extract.store import StoreReader, StoreWriter  # noqa: E402

ROWS = 40
DIMS = {"image": 2048, "audio": 128}


def stores(folder: Path, videos: int, tags: int) -> Path:
    """Two feature stores and a manifest; reused when already written with these sizes."""
    manifest = folder / "manifest.csv"
    if manifest.exists() and all(len(StoreReader(folder / name)) == videos for name in DIMS):
        return manifest
    rng = np.random.default_rng(0)
    directions = {name: rng.standard_normal((tags, dim), dtype=np.float32) for name, dim in DIMS.items()}
    labels = [rng.choice(tags, int(rng.integers(1, 4)), replace=False) for _ in range(videos)]
    for name, dim in DIMS.items():
        attrs = {"kind": "features", "backbone": f"paddle_{name}", "config": json.dumps({"paddle": name})}
        with StoreWriter(folder / name, row_shape=(dim,), dtype=np.float32, attrs=attrs) as writer:
            for i, tagged in enumerate(labels):
                rows = rng.standard_normal((ROWS, dim), dtype=np.float32) + directions[name][tagged].sum(0) / 2
                writer.add(f"v{i:06d}", rows, np.arange(ROWS, dtype=np.float32))
    splits = rng.choice(["train", "val", "test"], videos, p=[0.8, 0.1, 0.1])
    lines = ["id,video,split,tags"] + [
        f'v{i:06d},v{i:06d}.mp4,{split},"{",".join(f"t{t:03d}" for t in sorted(tagged))}"'
        for i, (split, tagged) in enumerate(zip(splits, labels, strict=True))
    ]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak resident MB) of one command."""
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(args)} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def metrics_cost(videos: int, tags: int, resamples: int = 1000) -> dict:
    """Seconds to tune thresholds and to compute a multi-label split's metrics with bootstrap intervals."""
    from heads.evaluate import evaluate_split
    from heads.kinds import Task

    rng = np.random.default_rng(1)
    y = (rng.random((videos, tags)) < 2 / tags).astype(np.int8)
    p = np.clip(rng.random((videos, tags)) * 0.7 + y * 0.3, 0, 1)  # some signal, many distinct scores
    task = Task("multi_label", ("tags",), "bce", classes=[f"t{i}" for i in range(tags)])
    start = time.perf_counter()
    thresholds = task.kind.tune_thresholds(y, p)
    tuned = time.perf_counter()
    evaluate_split(task, y, p, thresholds, resamples, 0)
    done = time.perf_counter()
    return {
        "metrics_videos": videos,
        "metrics_classes": tags,
        "thresholds_s": round(tuned - start, 2),
        "metrics_with_bootstrap_s": round(done - tuned, 2),
        "resamples": resamples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12000)
    parser.add_argument("--tags", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--metrics-videos", type=int, default=10000, help="videos of the metrics timing")
    args = parser.parse_args()
    print(json.dumps(metrics_cost(args.metrics_videos, args.tags)), flush=True)
    folder = RESULTS / "heads_scale" / f"{args.videos}x{args.tags}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = stores(folder, args.videos, args.tags)
    head = {
        "task": "multi_label",
        "target": "tags",
        "manifest": str(manifest),
        "inputs": [
            {"store": str(folder / "image"), "pool": "lstm", "hidden": 128},
            {"store": str(folder / "audio"), "pool": "lstm", "hidden": 128},
        ],
        "hidden": [256],
        "dropout": 0.5,
        "epochs": args.epochs,
        "batch_size": 16,
    }
    (folder / "params.yaml").write_text(yaml.safe_dump({"heads": {"tagger": head}}))
    heads = [sys.executable, "-m", "heads", "--params", str(folder / "params.yaml")]
    out = str(folder / "tagger")
    train_s, train_mb = timed([*heads, "train", "tagger", "--out", out], folder)
    evaluate_s, evaluate_mb = timed([*heads, "evaluate", "tagger", "--out", out], folder)
    store_mb = sum(p.stat().st_size for name in DIMS for p in (folder / name).glob("shard-*.h5")) / (1 << 20)
    metrics = json.loads((folder / "tagger" / "metrics.json").read_text())["test"]
    print(
        json.dumps(
            {
                "videos": args.videos,
                "tags": args.tags,
                "epochs": args.epochs,
                "stores_mb": round(store_mb),
                "train_s": round(train_s, 1),
                "train_peak_mb": round(train_mb),
                "evaluate_s": round(evaluate_s, 1),
                "evaluate_peak_mb": round(evaluate_mb),
                "peak_share_of_stores": round(max(train_mb, evaluate_mb) / store_mb, 3),
                "test_hit@1": metrics["hit@1"],
                "test_map": metrics["map"],
            }
        )
    )


if __name__ == "__main__":
    main()
