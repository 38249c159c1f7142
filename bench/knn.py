"""The exact k-nearest-neighbour graph `insight` and `neighbours` compute, at the sizes users have.

    python bench/knn.py [--videos 100000] [--dim 512] [--k 10]

Random unit rows (the values do not change the cost) through `extract.analysis.insight.knn_graph`: every
video's k nearest, exactly; then the pass `insight` makes (each video's nearest, and the pairs at
a cosine of 0.95 or more). Prints JSON with the seconds, the peak memory and the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.peer import machine  # noqa: E402
from extract.analysis.knn import QUERY_BLOCK, knn_graph  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    units = rng.standard_normal((args.videos, args.dim), dtype=np.float32)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    start = time.perf_counter()
    found, _, _ = knn_graph(units, args.k)
    graph_s = time.perf_counter() - start
    start = time.perf_counter()
    _, _, (i, _, _) = knn_graph(units, 1, 0.95)  # what insight runs: nearest and near-duplicate pairs
    pairs_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {"videos": args.videos, "dim": args.dim, "k": args.k, "block": QUERY_BLOCK}
    record |= {"knn_graph_s": round(graph_s, 1), "insight_pass_s": round(pairs_s, 1), "pairs": len(i)}
    record |= {"peak_mb": round(peak_mb), "shape": list(found.shape), **machine()}
    print(json.dumps(record))


if __name__ == "__main__":
    main()
