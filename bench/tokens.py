"""Token stores: bytes per video, write and read speed, and an attentive probe trained over one with
bounded memory.

    python bench/tokens.py [--videos 10000] [--tokens 512] [--dim 1024] [--max-len 64] [--epochs 1]

A store of `--videos` videos of `--tokens` rows of `--dim` float16 values: V-JEPA 2 ViT-L tokens of a
16-frame 256 px clip are 2,048 x 1,024 (4 MiB a video); `rows: tokens, token_pool: 2` gives 512 (1 MiB).
Rows carry a class signal (5 classes) so the probe has something to learn. Timed:
- writing it (`StoreWriter`, checksums included), in MB/s, and the bytes a video takes (`store_info`);
- reading 200 random videos whole, and `--max-len` random rows of each (what a head's batch reads);
- `python -m heads train` of V-JEPA 2's probe as published (3 self-attention blocks, one query's
  cross-attention, a linear layer) reading `--max-len` rows per video per batch, `--epochs`, batch
  32: wall seconds and the process's peak resident memory.
Prints a markdown table and one JSON line, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
from bench.sweep import write_manifest  # noqa: E402
from extract.store import StoreReader, StoreWriter, store_info  # noqa: E402

CLASSES = 5


def write_store(folder: Path, args: argparse.Namespace, labels: np.ndarray) -> float:
    """Seconds to write the store; rows are a few noise blocks plus the class's direction."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(8, args.tokens, args.dim)).astype(np.float16)
    centres = (rng.normal(size=(CLASSES, 1, args.dim)) * 0.5).astype(np.float16)
    times = np.repeat(np.arange(args.tokens // 64 or 1, dtype=np.float32), 64)[: args.tokens]
    times = np.pad(times, (0, args.tokens - len(times)), mode="edge")
    attrs = {"config": json.dumps({"backbone": {"model": "bench-tokens"}})}
    start = time.perf_counter()
    with StoreWriter(folder / "tokens", row_shape=(args.dim,), dtype=np.float16, attrs=attrs) as writer:
        for i in range(args.videos):
            writer.add(f"v{i}", noise[i % 8] + centres[labels[i]], times)
    return time.perf_counter() - start


def read_speeds(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    reader = StoreReader(folder / "tokens")
    rng = np.random.default_rng(1)
    chosen = [f"v{i}" for i in rng.choice(args.videos, min(200, args.videos), replace=False)]
    start = time.perf_counter()
    whole = sum(reader.read(vid).nbytes for vid in chosen)
    whole_s = time.perf_counter() - start
    start = time.perf_counter()
    for vid in chosen:
        reader.read(vid, np.sort(rng.choice(args.tokens, min(args.max_len, args.tokens), replace=False)))
    slices_s = time.perf_counter() - start
    return {
        "whole_MBps": whole / whole_s / 1e6,
        "whole_ms_per_video": whole_s / len(chosen) * 1e3,
        "slice_ms_per_video": slices_s / len(chosen) * 1e3,
    }


def train_probe(folder: Path, args: argparse.Namespace, labels: np.ndarray) -> dict[str, float]:
    write_manifest(folder / "manifest.csv", labels, np.random.default_rng(2))
    probe = {"store": str(folder / "tokens"), "pool": "attentive_probe", "max_len": args.max_len, "heads": 16}
    head = {
        "task": "multi_class",
        "target": "label",
        "manifest": str(folder / "manifest.csv"),
        "inputs": [{**probe, "self_blocks": 3}],
        "hidden": [],
        "epochs": args.epochs,
        "batch_size": 32,
        "bootstrap": 0,
    }
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump({"heads": {"probe": head}}), encoding="utf-8")
    command = [sys.executable, "-m", "heads", "--params", str(params), "train", "probe", "--out", str(folder / "h")]
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"heads train failed ({status})")
    history = json.loads((folder / "h" / "history.json").read_text(encoding="utf-8"))
    return {
        "train_s": time.perf_counter() - start,
        "peak_rss_MiB": usage.ru_maxrss / 1024,
        "val_accuracy": history[-1].get("val_accuracy"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=10000)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    labels = np.random.default_rng(3).integers(0, CLASSES, args.videos)
    with tempfile.TemporaryDirectory(prefix="reelfeat-tokens-", dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        write_s = write_store(folder, args, labels)
        size = sum(f.stat().st_size for f in (folder / "tokens").rglob("*") if f.is_file())
        summary = next(line for line in store_info(folder / "tokens").splitlines() if "bytes per video" in line)
        results = {
            "write_s": write_s,
            "write_MBps": size / write_s / 1e6,
            "store_bytes": size,
            "bytes_per_video": size / args.videos,
            "store_info": summary.strip(),
        }
        results |= read_speeds(folder, args)
        results |= train_probe(folder, args, labels)
    results["bench_peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    host = machine()
    print(
        f"token store: {args.videos} videos x {args.tokens} x {args.dim} float16 ({host['cpu']}, {host['cores']} cores)"
    )
    print("| what | figure |")
    print("|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:,.2f} |" if isinstance(value, float) else f"| {key} | {value} |")
    print(json.dumps({"args": vars(args), "machine": host, "results": results}))


if __name__ == "__main__":
    main()
