"""Every benchmark, one command, one markdown report: `python bench/suite.py [--quick]`.

Writes bench/results/suite.md with the machine, the library versions and each benchmark's table:
decode (sampled against full), extraction (end to end against model only), reelfeat against the
naive seed-style pipeline, head training against re-running the backbones every epoch, scaling
with clip count (local and Ray, Ray's start-up apart) and the peak memory of one 10-minute 1080p
clip, the cost of growing a DVC project by 1%, heads at scale, views kept as JPEG, the seek modes,
and (given `--vf` and `--vf-python`) the comparison with video_features. Figures of
the first benchmarks are medians of 3 runs (5 for extraction). `--quick` runs small sizes, once
each, to check the suite itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, check=True)
    return done.stdout


def records_of(output: str) -> list[dict]:
    """The JSON lines of a benchmark's output (other lines are what the commands it ran printed)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory = next(
        (
            int(line.split()[1]) // 1024 // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    versions = []
    for name in ("torch", "torchvision", "transformers", "openai-whisper", "h5py", "numpy", "dvc", "ray"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory} GiB, no GPU"
        if not _gpu()
        else f"- machine: {cpu}, {os.cpu_count()} cores, {memory} GiB, GPU {_gpu()}",
        f"- {ffmpeg.split(' Copyright')[0]}; Python {platform.python_version()}; {', '.join(versions)}",
    ]


def _gpu() -> str:
    """Asked in a subprocess: torch here would inflate every child's peak memory (Linux keeps the
    peak resident size of a forked process across exec)."""
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()


def table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the suite, not the machine")
    parser.add_argument("--vf", help="a video_features checkout, for bench/peer.py (skipped without)")
    parser.add_argument("--vf-python", help="the python of its virtual environment")
    args = parser.parse_args()
    q = args.quick
    repeats = "1" if q else "3"
    report = ["# reelfeat benchmarks", "", *machine(), ""]
    report += [
        "## Decode: sampled against full (median of runs)",
        "",
        run("decode.py", "--repeats", repeats, *(["--seconds", "20"] if q else [])).strip(),
        "",
    ]
    report += [
        "## Extraction: ResNet50 end to end against model only",
        "",
        run("extract.py", *(["--videos", "4", "--repeats", "1"] if q else ["--repeats", "5"])).strip(),
        "",
    ]
    naive = [
        json.loads(
            run("naive.py", "--videos", "2" if q else "20", "--seconds", str(s), "--repeats", repeats)
            .strip()
            .splitlines()[-1]
        )
        for s in ((10,) if q else (10, 30))
    ]
    report += [
        "## reelfeat against the naive seed-style pipeline",
        "",
        *table(naive, ["videos", "seconds", "naive_s", "reelfeat_s", "speedup", "runs"]),
        "",
    ]
    report += [
        "## Heads: training on cached features against re-running the backbones every epoch",
        "",
        run("heads.py", "--repeats", repeats, *(["--videos", "200", "--cost-videos", "2"] if q else [])).strip(),
        "",
    ]
    scaling = ["--repeats", repeats, *(["--counts", "4", "8", "--long-seconds", "20"] if q else [])]
    records = [json.loads(line) for line in run("scaling.py", *scaling).strip().splitlines()]
    ray_start = next((r["ray_start_s"] for r in records if "ray_start_s" in r), None)
    report += [
        "## Scaling: decode + ResNet50 for N clips, local and Ray backends",
        "",
        *table([r for r in records if "clips" in r], ["backend", "clips", "wall_s", "s_per_clip", "runs"]),
        "",
        f"Starting the local Ray instance, once per process, not in the rows above: {ray_start} s.",
        "",
    ]
    long = next((r for r in records if "peak_mb" in r), {})
    report += [
        "## Peak memory decoding one long 1080p clip",
        "",
        *table([long], ["seconds", "wall_s", "peak_mb", "peak_mb_max", "runs"]),
        "",
    ]
    incremental = records_of(run("incremental.py", "--videos", *(["20"] if q else ["300", "3000"])))
    report += [
        "## Growing a DVC project by 1%: wall time, cache growth, push and pull",
        "",
        *table(
            incremental,
            ["videos", "added", "full_s", "grow_s", "grow_share", "stores_mb", "cache_growth_mb", "push_mb", "pull_mb"],
        ),
        "",
    ]
    scale_args = ["--videos", "500", "--tags", "30", "--epochs", "1", "--metrics-videos", "1000"] if q else []
    metrics, tagger = records_of(run("heads_scale.py", *scale_args))  # the heads CLI prints its metrics too
    tagger_columns = ["videos", "tags", "epochs", "stores_mb", "train_s", "train_peak_mb", "evaluate_s"]
    tagger_columns += ["evaluate_peak_mb", "peak_share_of_stores"]
    metrics_columns = ["metrics_videos", "metrics_classes", "thresholds_s", "metrics_with_bootstrap_s", "resamples"]
    report += [
        "## Heads at scale: a BiLSTM tagger on PaddleVideo-sized stores; metrics with bootstrap",
        "",
        *table([tagger], tagger_columns),
        "",
        *table([metrics], metrics_columns),
        "",
    ]
    jpeg = records_of(run("jpeg.py", "--quality", *(["90"] if q else ["90", "75"])))
    report += [
        "## Views kept as JPEG against raw",
        "",
        *table(jpeg, list(jpeg[0])),
        "",
    ]
    report += [
        "## Seek modes: decode seconds per video",
        "",
        run("seek.py", "--repeats", repeats).strip(),
        "",
    ]
    if args.vf and args.vf_python:
        peer_args = ["--vf", args.vf, "--vf-python", args.vf_python, "--repeats", repeats]
        peer = records_of(run("peer.py", *peer_args, *(["--sets", "generated"] if q else [])))
        report += [
            "## Against video_features (whole processes, start-up included)",
            "",
            *table(peer, ["set", "feature", "side", "videos", "seconds", "faster_than_video_features", "runs"]),
            "",
        ]
    out = BENCH / "results" / "suite.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
