"""Incremental cost: a DVC project of N clips, then +1% of clips. What the second `dvc repro` costs
against the first, and what `.dvc/cache`, `dvc push` and a collaborator's `dvc pull` move.

    python bench/incremental.py [--videos 300 3000] [--grow 0.01]

A throwaway git + DVC project made from this repository (its dvc.yaml, params.yaml, .dvcignore and
code), a local folder as the remote, and a clone of it as the collaborator. The pipeline is
prepare + decode (4 frames of 112x112) + extract@resnet18 (random weights loaded through the
production loader). Clips are 2 s 320x180 H.264 copies of one generated clip, each with its own
title tag, so every file is distinct (its own sha256) while making 3,000 of them takes a minute.
Prints one JSON line per N.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.clips import RESULTS, generated_clip  # noqa: E402
from bench.weights import torchvision_file  # noqa: E402


def clips(count: int) -> list[Path]:
    """`count` distinct clips, made once into bench/results/incremental/."""
    folder = RESULTS / "incremental"
    base = generated_clip(folder / "base.mp4", 2, "320x180", gop=30)
    paths = [folder / f"c{i:05d}.mp4" for i in range(count)]
    for i, path in enumerate(paths):
        if not path.exists():
            command = ["ffmpeg", "-v", "error", "-y", "-i", str(base), "-c", "copy", "-metadata", f"title=clip {i}"]
            subprocess.run([*command, str(path)], check=True)
    return paths


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def git(cwd: Path, *args: str) -> str:
    return sh(cwd, "git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args)


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def add_clips(project: Path, paths: list[Path], start: int) -> None:
    """Hard-link clips into the project and list them in its manifest."""
    with open(project / "data" / "clips" / "manifest.csv", "a") as manifest:
        for i, path in enumerate(paths, start):
            os.link(path, project / "data" / "clips" / f"c{i:05d}.mp4")
            manifest.write(f"c{i:05d}.mp4,{i % 2}\n")


def project(folder: Path, weights: Path) -> Path:
    repo = folder / "project"
    repo.mkdir()
    for name in ("extract", "heads", "dvc.yaml", "params.yaml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"] = {"manifest": "data/clips/manifest.csv", "videos": "data/clips", "columns": {"label": "binary"}}
    params["decode"] = {"views": {"frames": {"type": "frames", "num_frames": 4, "size": [112, 112]}}}
    params["backbones"] = {"resnet18": {"input": "data/decoded/frames", "weights": str(weights)}}
    params["heads"] = {"h": {"task": "binary", "target": "label", "inputs": [{"store": "data/features/resnet18"}]}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data/*\n!/data/clips/\n/data/clips/*.mp4\n")
    (repo / "data" / "clips").mkdir(parents=True)
    (repo / "data" / "clips" / "manifest.csv").write_text("video,label\n")
    git(repo, "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(folder / "remote"))
    return repo


def repro(repo: Path) -> float:
    start = time.perf_counter()
    sh(repo, "dvc", "repro", "extract@resnet18")
    return time.perf_counter() - start


def measure(videos: int, grow: float, weights: Path) -> dict:
    added = math.ceil(videos * grow)
    paths = clips(videos + added)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        repo = project(folder, weights)
        add_clips(repo, paths[:videos], 0)
        full_s = repro(repo)
        stores = size(repo / "data" / "decoded") + size(repo / "data" / "features")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "full")
        sh(repo, "dvc", "push")
        clone = folder / "clone"
        git(folder, "clone", "-q", str(repo), str(clone))
        sh(clone, "dvc", "pull", "--with-deps", "extract@resnet18")
        cache, remote, cloned = size(repo / ".dvc" / "cache"), size(folder / "remote"), size(clone / ".dvc" / "cache")
        again_s = repro(repo)  # nothing changed

        add_clips(repo, paths[videos:], videos)
        grow_s = repro(repo)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "grown")
        sh(repo, "dvc", "push")
        git(clone, "pull", "-q")
        sh(clone, "dvc", "pull", "--with-deps", "extract@resnet18")
        mb = 1 << 20
        return {
            "videos": videos,
            "added": added,
            "full_s": round(full_s, 1),
            "unchanged_s": round(again_s, 1),
            "grow_s": round(grow_s, 1),
            "grow_share": round(grow_s / full_s, 3),
            "stores_mb": round(stores / mb, 1),
            "cache_growth_mb": round((size(repo / ".dvc" / "cache") - cache) / mb, 2),
            "push_mb": round((size(folder / "remote") - remote) / mb, 2),
            "pull_mb": round((size(clone / ".dvc" / "cache") - cloned) / mb, 2),
            "growth_share_of_stores": round((size(repo / ".dvc" / "cache") - cache) / stores, 4),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--grow", type=float, default=0.01, help="share of videos added (default 0.01)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = torchvision_file(Path(tmp), "resnet18")
        for videos in args.videos:
            print(json.dumps(measure(videos, args.grow, weights)), flush=True)


if __name__ == "__main__":
    main()
