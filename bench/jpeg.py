"""Decoded views kept raw against kept as JPEG: bytes per video, how close the frames stay (PSNR), and
how much the features move (cosine of ResNet50 rows per frame and R(2+1)D-18 rows per clip against
the raw view's).

    python bench/jpeg.py [--quality 90 75]

Videos: the 24 demo clips and the real clips in ../shared/media/ when present. Views as the presets
use them: 10 frames of 224x224 (ResNet50) and one 16-frame clip of 128x171 (R(2+1)D-18). The
backbones have random weights (no trained torchvision weights are reachable here), loaded through
the production loaders; trained weights may react to JPEG artefacts differently. Prints a JSON line
per video set and quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.clips import real_clips  # noqa: E402
from bench.weights import torchvision_file  # noqa: E402
from extract.core.files import file_sha256  # noqa: E402
from extract.stages.decode import run_decode, views_from_params  # noqa: E402
from extract.stages.features import run_features  # noqa: E402
from extract.store import StoreReader  # noqa: E402

VIEWS = {
    "frames": {"type": "frames", "num_frames": 10, "max_seconds": 10, "size": [224, 224]},
    "clips": {"type": "clips", "num_clips": 1, "clip_len": 16, "max_seconds": 10, "size": [128, 171]},
}
BACKBONES = {"frames": "resnet50", "clips": "r2plus1d_18"}


def video_sets() -> dict[str, list[Path]]:
    sets = {"demo": sorted((ROOT / "data" / "demo" / "clips").glob("*.mp4"))}
    if real := real_clips():
        sets["real"] = real
    return sets


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def cosines(a: StoreReader, b: StoreReader) -> np.ndarray:
    rows = [(a.get(vid)[0].astype(np.float64), b.get(vid)[0].astype(np.float64)) for vid in a.ids]
    x, y = np.concatenate([r for r, _ in rows]), np.concatenate([r for _, r in rows])
    return (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


def stored_bytes(store: StoreReader) -> int:
    return sum(facts["bytes"] for facts in store.shards.values())


def measure(name: str, videos: list[Path], quality: int, work: Path, weights: dict[str, Path]) -> dict:
    rows = [{"id": p.stem, "video": str(p), "sha256": file_sha256(p)} for p in videos]
    out = {"videos": name, "count": len(videos), "quality": quality}
    for storage in ("raw", "jpeg"):
        views = {k: {**v, "storage": storage, "jpeg_quality": quality} for k, v in VIEWS.items()}
        run_decode(rows, views_from_params({"views": views}), work / storage, workers=2)
        for view, backbone in BACKBONES.items():
            values = {"input": str(work / storage / view), "weights": str(weights[backbone]), "dtype": "float32"}
            run_features(backbone, values, work / f"{storage}_{backbone}")
    for view, backbone in BACKBONES.items():
        raw, jpeg = StoreReader(work / "raw" / view), StoreReader(work / "jpeg" / view)
        out[f"{view}_raw_kb_per_video"] = round(stored_bytes(raw) / len(raw) / 1024, 1)
        out[f"{view}_jpeg_kb_per_video"] = round(stored_bytes(jpeg) / len(jpeg) / 1024, 1)
        out[f"{view}_psnr_db"] = round(float(np.median([psnr(raw.get(v)[0], jpeg.get(v)[0]) for v in raw.ids])), 1)
        similarity = cosines(StoreReader(work / f"raw_{backbone}"), StoreReader(work / f"jpeg_{backbone}"))
        out[f"{backbone}_cosine_min"] = round(float(similarity.min()), 5)
        out[f"{backbone}_cosine_median"] = round(float(np.median(similarity)), 5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", type=int, nargs="+", default=[90, 75])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = {name: torchvision_file(Path(tmp), name) for name in BACKBONES.values()}
        for quality in args.quality:
            for name, videos in video_sets().items():
                with tempfile.TemporaryDirectory() as work:
                    print(json.dumps(measure(name, videos, quality, Path(work), weights)), flush=True)


if __name__ == "__main__":
    main()
