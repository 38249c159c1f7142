"""How far apart known near-duplicates sit in a feature store, against all other pairs: the evidence
for `insight`'s default threshold.

    python bench/duplicates.py [--backbones resnet50 clip whisper] [--out bench/results/duplicates]

From each real clip in ../shared/media and the first demo clips, ffmpeg makes six known copies, as
reposts are made: re-encoded (CRF 35), cropped 10% (and scaled back), a watermark box and burned-in
caption bar, sped up 5%, mirrored, and trimmed by its first second. All videos, originals and
copies (with their audio), go through `python -m extract run` (10 frames per video, or all the
audio without transcripts) into one store per backbone; each video's mean row, L2-normalised, is
compared with every other's. True pairs: a clip and any of its
copies, or two copies of one clip. Every other pair is a false one. The output: each backbone's
quantiles of both cosine distributions, and precision and recall at each threshold.

Whisper runs with its trained tiny.en weights from ../shared/weights; ResNet50 and CLIP with their
trained weights where the libraries' caches hold them (`python -m extract weights` fills them), else
with random weights, as this machine cannot download theirs: each line says which.
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

from bench.clips import MEDIA, RESULTS, real_clips, videos_in  # noqa: E402
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


def make_copies(sources: list[Path], folder: Path, seconds: int = 20, height: int | None = None) -> dict[str, str]:
    """Each copy's file stem -> its source's stem. The originals are each source's first `seconds`
    (scaled to `height`, if given) re-encoded at high quality with their audio, beside the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    origin = {}
    scale = ["-vf", f"scale=-2:{height}"] if height else []
    for source in sources:
        original = folder / f"{source.stem}.mp4"
        if not original.exists():
            encode = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac"]
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", str(seconds), *scale, *encode, str(original)],
                check=True,
            )
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
    """`run` into out/<backbone>: it reuses the videos whose file and settings (weights included) are unchanged."""
    cmd = [sys.executable, "-m", "extract", "run", backbone, *map(str, videos), "--out", str(out / backbone),
           "--frames", "10", "--dtype", "float32"]  # fmt: skip
    if weights:
        cmd += ["--weights", str(weights)]
    if backbone == "whisper":  # the encoder's rows are the same without transcripts, and come faster
        cmd += ["--set", "transcribe=false"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out / backbone / backbone  # `run --out DIR` writes DIR/<backbone>


def weights_for(backbone: str, folder: Path) -> tuple[Path | None, str]:
    """(weights for `run --weights`, what they are): Whisper tiny.en's trained checkpoint from
    ../shared/weights; for ResNet50 and CLIP their trained defaults where the libraries' caches hold
    them (None: `run` resolves them as users get them), else random weights saved where the
    production loader reads them."""
    from bench.weights import torchvision_file

    folder.mkdir(parents=True, exist_ok=True)
    if backbone == "whisper":
        return MEDIA.parent / "weights" / "whisper-tiny.en.pt", "trained: whisper tiny.en (../shared/weights)"
    random = "random (trained ones not cached, and not downloadable here)"
    if backbone == "resnet50":
        import torch
        from torchvision.models import ResNet50_Weights

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet50_Weights.DEFAULT.url).name
        return (None, f"trained: {cached.name} (cached)") if cached.is_file() else (
            torchvision_file(folder, "resnet50"), random)  # fmt: skip
    if backbone == "clip":
        from huggingface_hub import try_to_load_from_cache
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        from extract.backbones.clip import DEFAULT_CHECKPOINT

        if isinstance(try_to_load_from_cache(DEFAULT_CHECKPOINT, "config.json"), str):
            return None, f"trained: {DEFAULT_CHECKPOINT} (cached)"
        path = folder / "clip-vit-b32"
        if not path.exists():
            CLIPModel(CLIPConfig()).save_pretrained(path)
            CLIPImageProcessor().save_pretrained(path)
        return path, random
    return None, "the library's default (downloaded or cached)"


def cosines(rows: dict[str, np.ndarray], origin: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(cosines of true pairs, cosines of all other pairs)."""
    names = sorted(n for n in rows if Path(n).name in origin)
    units = np.stack([rows[n] / np.linalg.norm(rows[n]) for n in names])
    source = np.array([origin[Path(n).name] for n in names])
    matrix = units @ units.T
    upper = np.triu_indices(len(names), 1)
    same = source[upper[0]] == source[upper[1]]
    return matrix[upper][same], matrix[upper][~same]


def grouping(reader, origin: dict[str, str], with_rows: set[str], threshold: float) -> dict:
    """What `insight` makes of the store at `threshold`: the share of copies (of sources `with_rows`)
    grouped with their original (connected components, as duplicates.csv holds them), and the groups
    that join two sources."""
    from extract.analysis.insight import find_duplicates

    found = find_duplicates(reader, threshold)
    names = [Path(vid).name for vid in found.ids]
    group_of = dict(zip(names, found.group.tolist(), strict=True))
    copies = [n for n in names if n in origin and n != origin[n] and origin[n] in with_rows]
    with_original = sum(group_of[n] >= 0 and group_of[n] == group_of[origin[n]] for n in copies)
    sources_in: dict[int, set[str]] = {}
    for name, group in group_of.items():
        if group >= 0 and name in origin:
            sources_in.setdefault(group, set()).add(origin[name])
    return {
        "threshold": threshold,
        "copies_with_original": round(with_original / len(copies), 4),
        "groups_joining_sources": sum(len(sources) > 1 for sources in sources_in.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="*", default=["resnet50", "clip", "whisper"])
    parser.add_argument("--demo", type=int, default=8, help="demo clips taken as sources besides the real ones")
    parser.add_argument("--out", type=Path, default=RESULTS / "duplicates")
    args = parser.parse_args()
    sources = real_clips() + videos_in(ROOT / "data" / "demo" / "clips")[: args.demo]
    origin = make_copies(sources, args.out / "videos")
    videos = sorted((args.out / "videos").glob("*.mp4"))
    where = machine()
    from extract.store import StoreReader

    for backbone in args.backbones:
        weights, about = weights_for(backbone, args.out / "weights")
        store = store_for(backbone, videos, args.out / "stores", weights)
        reader = StoreReader(store)
        rows = {vid: r.astype(np.float32).mean(0) for vid, r in reader.iter_rows() if len(r)}
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
            "weights": about,
            "sources": len({origin[Path(vid).name] for vid in rows}),  # with rows: silent ones give none to audio
            "videos": len(rows),
            "true_pairs": len(true),
            "other_pairs": len(false),
            "true_quantiles": [round(float(np.quantile(true, q)), 4) for q in quantiles],
            "other_quantiles": [round(float(np.quantile(false, q)), 4) for q in quantiles],
            "at": points,
            "grouped": [grouping(reader, origin, {Path(v).name for v in rows}, t) for t in THRESHOLDS],
            **where,
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
