"""reelfeat against v-iashin/video_features, the extractor most people in this field use.

    python bench/peer.py --vf PATH/video_features --vf-python PATH/venv/bin/python [--repeats 3]
                         [--sets generated real long hundred] [--folder DIR] [--features resnet50 vggish]

video_features is not on PyPI. Get it with `git clone https://github.com/v-iashin/video_features`
and give it a virtual environment with torch, torchvision, opencv-python-headless, omegaconf,
numpy and tqdm (`python -m venv vfenv && vfenv/bin/pip install ...`; to reuse this project's
torch instead of installing another, put a `.pth` file naming `.venv/lib/python3.11/site-packages`
into the new venv's site-packages and install only opencv-python-headless and omegaconf).

Both tools get the same clips and the same random weights (ResNet50 under the torch hub name
video_features downloads, VGGish with its PCA), and run on the CPU. Every figure is the wall time of
whole processes, start-up included, from empty outputs; the sides alternate within each repeat and
the median of the repeats is reported. The sides:
- video_features: its own CLI (`main.py feature_type=resnet model_name=resnet50 extraction_total=10
  on_extraction=save_numpy device=cpu`; VGGish likewise);
- reelfeat one-shot: `python -m extract run resnet50 VIDEO... --frames 10 --seek exact` (also `--seek
  fast`, and `--seek auto`, the frames views' default; `one-shot float32` and `one-shot int8` are
  `--seek auto` with that `--precision`: ONNX Runtime, its model exported by the first run);
- reelfeat stages: `python -m extract prepare`, `decode`, `features` in a project, as `dvc repro`
  runs them (DVC's own bookkeeping not counted).
Outputs are checked to have the same number of rows per video. Sets: 13 generated 4 s 720x1280
clips (2 s keyframe interval, with audio), the real clips in ../shared/media (VGGish: those with
audio), one generated 5-minute 720x1280 clip, `hundred`: the real clips copied under new names to
about 100 videos (start-up shared as in a real dataset), and `--folder`'s videos. Prints one JSON
line per set, feature and side, each with the CPU, its native bfloat16 flags and what `auto`
precision resolves to; and, where the stages ran, one line of anchors: the decode stage alone, the
features stage alone on its frames (the model, start-up included), the one-shot end to end, and
end to end over the slower of the two anchors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.clips import RESULTS, generated_clip, real_clips, videos_in  # noqa: E402
from bench.weights import torchvision_file, vggish_folder  # noqa: E402

# video_features loads these torch hub names; reelfeat reads the same files by path
HUB_NAMES = {"resnet50": "resnet50-0676ba61.pth"}  # IMAGENET1K_V1, which video_features asks for


HUNDRED = 100  # the real set repeated to about this many videos: start-up shared as in a real dataset


def clip_sets(names: list[str], extra: Path | None = None) -> dict[str, list[Path]]:
    sets = {}
    if "generated" in names:
        folder = RESULTS / "peer"
        sets["generated"] = [
            generated_clip(folder / f"short{i:02d}.mp4", 4, "720x1280", tone_hz=300 + 40 * i, gop=60) for i in range(13)
        ]
    if "real" in names and (real := real_clips()):
        sets["real"] = real
    if "long" in names:
        sets["long"] = [generated_clip(RESULTS / "peer" / "long300.mp4", 300, "720x1280", tone_hz=440, gop=60)]
    if "hundred" in names and (real := real_clips()):
        sets["hundred"] = repeated(real, HUNDRED // len(real), RESULTS / "peer" / "hundred")
    if extra is not None:
        sets[extra.name] = videos_in(extra)
    return sets


def repeated(videos: list[Path], times: int, folder: Path) -> list[Path]:
    """`times` copies of each video under new names: separate files (not links), so neither tool can
    take one for another; reelfeat reuses rows only for the same id in the same store."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for i in range(times):
        for video in videos:
            copy = folder / f"{video.stem}_{i:02d}{video.suffix}"
            if not copy.exists():
                shutil.copyfile(video, copy)
            copies.append(copy)
    return copies


def has_audio(path: Path) -> bool:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a",
            "-show_entries",
            "stream=index",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
    ).stdout
    return bool(out.strip())


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return seconds


class Sides:
    """The commands of each side for one feature, and where each leaves its rows."""

    def __init__(self, feature: str, videos: list[Path], work: Path, weights: Path, vf: Path, vf_python: str):
        self.feature, self.videos, self.work, self.vf, self.vf_python = feature, videos, work, vf, vf_python
        self.weights = (
            weights / "vggish" if feature == "vggish" else weights / "hub" / "checkpoints" / HUB_NAMES[feature]
        )
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": str(weights), "REELFEAT_DEVICE": "cpu"}
        self.vf_env = {**os.environ, "TORCH_HOME": str(weights), "CUDA_VISIBLE_DEVICES": ""}
        (work / "videos.txt").write_text("".join(f"{v}\n" for v in videos))

    def run(self, side: str) -> float:
        out = self.work / side
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if side == "video_features":
            vf_type = "resnet" if self.feature.startswith("resnet") else "vggish"
            args = [f"feature_type={vf_type}", "device=cpu", "on_extraction=save_numpy"]
            args += [
                f"output_path={out}",
                f"tmp_path={out / 'tmp'}",
                f"file_with_video_paths={self.work / 'videos.txt'}",
            ]
            if vf_type == "resnet":
                args += [f"model_name={self.feature}", "extraction_total=10"]
            return timed([self.vf_python, "main.py", *args], self.vf, self.vf_env)
        if side.startswith("one-shot"):
            mode = side.split(" ", 1)[1] if " " in side else "exact"
            seek, precision = ("auto", mode) if mode in ("float32", "int8") else (mode, "auto")
            command = [sys.executable, "-m", "extract", "run", self.feature, *map(str, self.videos)]
            command += ["--weights", str(self.weights), "--frames", "10", "--seek", seek, "--out", str(out)]
            return timed([*command, "--precision", precision], out, self.env)
        return self.run_stages(out)

    def run_stages(self, project: Path) -> float:
        audio = self.feature == "vggish"
        view = (
            {"type": "audio", "sample_rate": 16000}
            if audio
            else {"type": "frames", "num_frames": 10, "max_seconds": None}
        )
        params = {
            "prepare": {"manifest": "manifest.csv"},
            "decode": {"views": {"input": view}},
            "backbones": {self.feature: {"input": "data/decoded/input", "weights": str(self.weights)}},
        }
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        (project / "manifest.csv").write_text("video\n" + "".join(f"{v}\n" for v in self.videos))
        python = [sys.executable, "-m", "extract"]
        # the commands `dvc repro` runs; decode alone and the model alone on its frames are the anchors
        commands = {"prepare": ["prepare"], "decode": ["decode"], "features": ["features", self.feature]}
        steps = {name: timed(python + command, project, self.env) for name, command in commands.items()}
        self.anchors = {"decode alone": steps["decode"], "model alone": steps["features"]}
        return sum(steps.values())

    def rows(self, side: str) -> dict[str, int]:
        """Rows per video (by file stem) that a side wrote."""
        out = self.work / side
        if side == "video_features":
            vf_type = "resnet" if self.feature.startswith("resnet") else "vggish"
            folder = out / vf_type / (self.feature if vf_type == "resnet" else "")
            suffix = f"_{vf_type}.npy"
            return {p.name[: -len(suffix)]: len(np.load(p)) for p in folder.glob(f"*{suffix}")}
        from extract.store import StoreReader

        store = StoreReader(out / self.feature if side.startswith("one-shot") else out / "data/features" / self.feature)
        return {Path(vid).name: len(store.get(vid)[0]) for vid in store.ids}


def machine() -> dict[str, object]:
    """The CPU, whether it does bfloat16 natively, and the precision `auto` resolves to on it."""
    import torch

    from extract.backbones import compute_dtype

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "native_bf16": sorted(flags & {"avx512_bf16", "amx_bf16"}),
        "avx2": "avx2" in flags,
        "auto_precision": str(compute_dtype("auto", torch.device("cpu"))).removeprefix("torch."),
    }


def make_weights(folder: Path, vf: Path) -> Path:
    """Random weights under the names both tools look for (video_features' VGGish keeps its own hub)."""
    hub = folder / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    for name, file in HUB_NAMES.items():
        if not (hub / file).exists():
            shutil.move(torchvision_file(folder, name), hub / file)
    vf_hub = vf / "models" / "vggish" / "hub" / "checkpoints"
    vf_hub.mkdir(parents=True, exist_ok=True)
    for file in vggish_folder(folder).iterdir():  # fetched by video_features' VGGish under the same names
        shutil.copy(file, vf_hub / file.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vf", type=Path, required=True, help="a checkout of v-iashin/video_features")
    parser.add_argument("--vf-python", required=True, help="the python of a venv that runs video_features")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=["generated", "real", "long", "hundred"])
    parser.add_argument("--folder", type=Path, help="also a set of the videos in this folder")
    parser.add_argument("--features", nargs="+", default=["resnet50", "vggish"])
    parser.add_argument(
        "--sides", nargs="+", default=["video_features", "one-shot", "one-shot fast", "one-shot auto", "stages"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reelfeat-peer-") as tmp:
        weights = make_weights(Path(tmp) / "weights", args.vf.resolve())
        host = machine()
        for set_name, videos in clip_sets(args.sets, args.folder).items():
            for feature in args.features:
                chosen = [v for v in videos if v.suffix == ".mp4" and has_audio(v)] if feature == "vggish" else videos
                sides = [s for s in args.sides if feature != "vggish" or s in ("video_features", "one-shot", "stages")]
                work = Path(tmp) / set_name / feature
                work.mkdir(parents=True)
                bench = Sides(feature, chosen, work, weights, args.vf.resolve(), args.vf_python)
                times: dict[str, list[float]] = {side: [] for side in sides}
                anchors: dict[str, list[float]] = {"decode alone": [], "model alone": []}
                for repeat in range(args.repeats):
                    order = sides[repeat % len(sides) :] + sides[: repeat % len(sides)]  # alternate who goes first
                    for side in order:
                        times[side].append(bench.run(side))
                        if side == "stages":
                            for name, seconds in bench.anchors.items():
                                anchors[name].append(seconds)
                counts = {side: bench.rows(side) for side in sides}
                expected = {v.stem for v in chosen}
                peer = statistics.median(times["video_features"]) if "video_features" in times else None
                for side in sides:
                    median = statistics.median(times[side])
                    # rows are compared on the videos both sides extracted; a video one side failed is named
                    others = [counts[other] for other in sides if other != side]
                    differ = sorted(
                        {v for o in others for v in counts[side].keys() & o.keys() if counts[side][v] != o[v]}
                    )
                    record = {
                        "set": set_name,
                        "feature": feature,
                        "side": side,
                        "videos": len(chosen),
                        "seconds": round(median, 2),
                        "runs": [round(t, 2) for t in times[side]],
                        "faster_than_video_features": round(peer / median, 2) if peer else None,
                        "rows": sum(counts[side].values()),
                        "rows_differ_on": differ,
                        "no_output_for": sorted(expected - counts[side].keys()),
                        **host,
                    }
                    print(json.dumps(record), flush=True)
                if anchors["decode alone"]:
                    slower = max(statistics.median(anchors["decode alone"]), statistics.median(anchors["model alone"]))
                    one_shot = "one-shot auto" if "one-shot auto" in times else "one-shot"
                    record = {
                        "set": set_name,
                        "feature": feature,
                        "videos": len(chosen),
                        **{name: round(statistics.median(runs), 2) for name, runs in anchors.items()},
                        "end to end": round(statistics.median(times[one_shot]), 2) if one_shot in times else None,
                        "slower anchor": round(slower, 2),
                        **host,
                    }
                    if record["end to end"] is not None:
                        record["end to end over slower anchor"] = round(record["end to end"] / slower, 2)
                    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
