"""export-parquet and import-parquet on a store larger than the row groups: seconds and peak memory.

    python bench/parquet.py [--videos 500] [--rows 1500] [--dim 384] [--out bench/results/parquet]

A float16 store of `videos` x `rows` x `dim` random rows (by default Whisper base's shape for 30 s
of audio, 553 MB), then `extract.interop.parquet_files.export_parquet` and `import_parquet`, each in a fresh
process so that its peak resident memory is its own. Prints JSON with both, the sizes and the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.clips import RESULTS  # noqa: E402
from bench.peer import machine  # noqa: E402


def make_store(path: Path, videos: int, rows: int, dim: int) -> None:
    from extract.store import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(path, row_shape=(dim,), dtype=np.float16, attrs={"kind": "features", "config": "{}"}) as writer:
        for i in range(videos):
            feats = rng.standard_normal((rows, dim), dtype=np.float32).astype(np.float16)
            writer.add(f"v{i:05d}", feats, np.arange(rows, dtype=np.float32) * 0.02, f"sha-{i}")


def timed(step: str, source: Path, target: Path) -> dict:
    """One step in this process (called as `--step`): seconds and peak resident memory."""
    from extract.interop.parquet_files import export_parquet, import_parquet

    start = time.perf_counter()
    (export_parquet if step == "export" else import_parquet)(source, target)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def folder_mb(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) >> 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--out", type=Path, default=RESULTS / "parquet")
    parser.add_argument("--step", choices=["export", "import"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    store, exported, back = args.out / "store", args.out / "exported", args.out / "back"
    if args.step:
        source, target = (store, exported) if args.step == "export" else (exported, back)
        print(json.dumps(timed(args.step, source, target)))
        return
    shutil.rmtree(args.out, ignore_errors=True)
    make_store(store, args.videos, args.rows, args.dim)
    record = {"videos": args.videos, "rows": args.rows, "dim": args.dim, "store_mb": folder_mb(store)}
    for step in ("export", "import"):
        run = [sys.executable, __file__, "--step", step, "--out", str(args.out)]
        record[step] = json.loads(subprocess.run(run, check=True, capture_output=True, text=True).stdout)
    record["parquet_mb"] = folder_mb(exported)
    print(json.dumps({**record, **machine()}))


if __name__ == "__main__":
    main()
