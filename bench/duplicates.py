"""How far apart known near-duplicates sit in a feature store, against all other pairs: the evidence
for `insight`'s default threshold.

    python bench/duplicates.py [--backbones resnet50 clip] [--out bench/results/duplicates]

From each real clip in ../shared/media and the first demo clips, ffmpeg makes six known copies, as
reposts are made: re-encoded (CRF 35), cropped 10% (and scaled back), a watermark box and burned-in
caption bar, sped up 5%, mirrored, and trimmed by its first second. All videos, originals and
copies, go through `python -m extract run` (10 frames per video) into one store per backbone; each
video's mean row, L2-normalised, is compared with every other's. True pairs: a clip and any of its
copies, or two copies of one clip. Every other pair is a false one. The output: each backbone's
quantiles of both cosine distributions, and precision and recall at each threshold.

The backbones run with random weights where their trained ones are not cached (this machine has
no internet): the line says which.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.clips import RESULTS, real_clips, videos_in  # noqa: E402
from bench.peer import machine  # noqa: E402

COPIES = {
    "reencoded": ["-c:v", "libx264", "-crf", "35", "-preset", "veryfast"],
    "cropped": ["-vf", "crop=iw*0.9:ih*0.9,scale=trunc(iw/0.9/2)*2:trunc(ih/0.9/2)*2"],
    "watermarked": ["-vf", "drawbox=x=iw*0.05:y=ih*0.05:w=iw*0.3:h=ih*0.08:color=white@0.6:t=fill,"
                    "drawbox=x=0:y=ih*0.8:w=iw:h=ih*0.1:color=black@0.7:t=fill"],
    "faster": ["-vf", "setpts=PTS/1.05", "-af", "atempo=1.05"],
    "mirrored": ["-vf", "hflip"],
    "trimmed": ["-ss", "1"],
}  # fmt: skip
THRESHOLDS = (0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


def make_copies(sources: list[Path], folder: Path) -> dict[str, str]:
    """Each copy's file stem -> its source's stem; the originals are linked in beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    origin = {}
    for source in sources:
        original = folder / f"{source.stem}.mp4"
        if not original.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", "20", "-c:v", "libx264",
                            "-preset", "veryfast", "-crf", "18", "-an", str(original)], check=True)  # fmt: skip
        origin[original.stem] = source.stem
        for name, args in COPIES.items():
            copy = folder / f"{source.stem}__{name}.mp4"
            if not copy.exists():
                head = args[:2] if args[0] == "-ss" else []
                rest = args[2:] if head else args
                subprocess.run(
                    ["ffmpeg", "-v", "error", "-y", *head, "-i", str(original), *rest, str(copy)], check=True
                )
            origin[copy.stem] = source.stem
    return origin


def store_for(backbone: str, videos: list[Path], out: Path, weights: Path | None) -> Path:
    store = out / backbone / backbone  # `run --out DIR` writes DIR/<backbone>
    if not store.exists():
        cmd = [sys.executable, "-m", "extract", "run", backbone, *map(str, videos), "--out", str(out / backbone),
               "--frames", "10", "--dtype", "float32"]  # fmt: skip
        if weights:
            cmd += ["--weights", str(weights)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return store


def random_weights(backbone: str, folder: Path) -> Path | None:
    """Random weights saved where the trained ones are not cached, as the production loader reads them."""
    from bench.weights import torchvision_file

    folder.mkdir(parents=True, exist_ok=True)
    if backbone == "resnet50":
        return torchvision_file(folder, "resnet50")
    if backbone == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        path = folder / "clip-vit-b32"
        if not path.exists():
            CLIPModel(CLIPConfig()).save_pretrained(path)
            CLIPImageProcessor().save_pretrained(path)
        return path
    return None


def cosines(rows: dict[str, np.ndarray], origin: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(cosines of true pairs, cosines of all other pairs)."""
    names = sorted(n for n in rows if Path(n).name in origin)
    units = np.stack([rows[n] / np.linalg.norm(rows[n]) for n in names])
    source = np.array([origin[Path(n).name] for n in names])
    matrix = units @ units.T
    upper = np.triu_indices(len(names), 1)
    same = source[upper[0]] == source[upper[1]]
    return matrix[upper][same], matrix[upper][~same]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="*", default=["resnet50", "clip"])
    parser.add_argument("--demo", type=int, default=8, help="demo clips taken as sources besides the real ones")
    parser.add_argument("--out", type=Path, default=RESULTS / "duplicates")
    args = parser.parse_args()
    sources = real_clips() + videos_in(ROOT / "data" / "demo" / "clips")[: args.demo]
    origin = make_copies(sources, args.out / "videos")
    videos = sorted((args.out / "videos").glob("*.mp4"))
    where = machine()
    from extract.store import StoreReader

    for backbone in args.backbones:
        weights = random_weights(backbone, args.out / "weights")
        store = store_for(backbone, videos, args.out / "stores", weights)
        rows = {vid: r.astype(np.float32).mean(0) for vid, r in StoreReader(store).iter_rows() if len(r)}
        true, false = cosines(rows, origin)
        points = []
        for threshold in THRESHOLDS:
            found, wrong = int((true >= threshold).sum()), int((false >= threshold).sum())
            precision = found / (found + wrong) if found + wrong else 1.0
            points.append(
                {"threshold": threshold, "precision": round(precision, 4), "recall": round(found / len(true), 4)}
            )
        quantiles = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
        record = {
            "backbone": backbone,
            "weights": "random (trained ones not cached)" if weights else "trained",
            "sources": len(sources),
            "videos": len(rows),
            "true_pairs": len(true),
            "other_pairs": len(false),
            "true_quantiles": [round(float(np.quantile(true, q)), 4) for q in quantiles],
            "other_quantiles": [round(float(np.quantile(false, q)), 4) for q in quantiles],
            "at": points,
            **where,
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
