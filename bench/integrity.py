"""What verified reads cost: stores written and read with their checksums, against the same reads with
the checks switched off in this process (`Shard._check`, `_check_videos`), on the reads heads make.

    python bench/integrity.py [--videos 2000] [--rows 10] [--dim 2048] [--repeats 3]

A feature store of `--videos` videos of `--rows` rows of `--dim` float16 values (ResNet50's, 10 frames),
in 64 MB shards. Timed, medians of `--repeats`:
- writing it (`StoreWriter`), and the XXH3 hashes of its rows alone (what the checksums add to a write);
- pooling every video (`StoreReader.pooled`, what a mean/max head does once before training);
- one epoch of a sequence head's reads: every video's rows, one `read` each;
- training heads on it (`heads/train.py`, 3 epochs): a mean-pooled MLP and a Transformer over the rows,
  the whole of what `train@<head>` does after start-up.
Prints a markdown table and one JSON line, with the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract.store import StoreReader, StoreWriter  # noqa: E402
from extract.store.shard import Shard, row_hashes  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(args.videos, args.rows, args.dim)).astype(np.float16)
    times = np.arange(args.rows, dtype=np.float32)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="reelfeat-integrity-") as tmp:

        def write() -> None:
            attrs = {"config": json.dumps({"backbone": {"model": "bench"}})}  # a recipe, as heads check it
            with StoreWriter(Path(tmp) / "s", row_shape=(args.dim,), dtype=np.float16, attrs=attrs) as w:
                for i in range(args.videos):
                    w.add(f"v{i}", rows[i], times)

        def hashes() -> None:
            for i in range(args.videos):
                row_hashes(rows[i])

        def pooled() -> None:
            StoreReader(Path(tmp) / "s").pooled()

        def epoch() -> None:
            reader = StoreReader(Path(tmp) / "s")
            for vid in reader.ids:
                reader.read(vid)

        from heads.config import head_config
        from heads.train import train

        manifest = Path(tmp) / "manifest.csv"
        splits = ["train"] * 8 + ["val"] * 2
        lines = [f"v{i},v{i}.mp4,{splits[i % 10]},{rng.normal():.4f}" for i in range(args.videos)]
        manifest.write_text("id,video,split,score\n" + "\n".join(lines) + "\n")

        def head(pool: str):
            values = {"task": "regression", "target": "score", "manifest": str(manifest), "epochs": 3}
            values["inputs"] = [{"store": str(Path(tmp) / "s"), "pool": pool, "max_len": 16, "hidden": 64}]
            config = head_config("bench", {**values, "bootstrap": 0})
            return lambda: train(config, Path(tmp) / f"head-{pool}")

        checked = Shard._check, Shard._check_videos
        for _ in range(args.repeats):
            results.setdefault("write", []).append(timed(write))
            results.setdefault("hashes of the rows", []).append(timed(hashes))
            reads = [("pool every video", pooled), ("sequence epoch", epoch)]
            heads = [("train a mean MLP head", head("mean")), ("train a Transformer head", head("transformer"))]
            for name, fn in reads + heads:
                Shard._check, Shard._check_videos = checked
                results.setdefault(f"{name}, verified", []).append(timed(fn))
                Shard._check = Shard._check_videos = lambda *a, **k: None  # noqa: E731 - the same read, unchecked
                results.setdefault(f"{name}, unchecked", []).append(timed(fn))
            Shard._check, Shard._check_videos = checked
    median = {name: round(statistics.median(values), 4) for name, values in results.items()}
    cpu = platform.processor() or platform.machine()
    print(f"\n{args.videos} videos x {args.rows} rows x {args.dim} float16, {cpu}\n")
    print("| what | seconds |\n|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value} |")
    for name in ("pool every video", "sequence epoch", "train a mean MLP head", "train a Transformer head"):
        cost = median[f"{name}, verified"] / median[f"{name}, unchecked"] - 1
        print(f"\n{name}: verification costs {cost:+.1%}")
    print(json.dumps({"machine": cpu, **median}))


if __name__ == "__main__":
    main()
