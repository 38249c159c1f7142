"""The GPU check: decoding, models and `run` on a GPU machine, measured in one command.

    python bench/gpu.py --out DIR [--device cuda] [--videos 500] [--families resnet50 clip r2plus1d_18 whisper]
    python bench/gpu.py --device cpu --videos 20 --out DIR    # the dry run: every step but the GPU's

On the GPU machine it runs through `bench/gpu/run.sh`, which puts the carried bundle (PyAV,
torchcodec and other wheels, NPP's libraries, clips, Whisper weights; see bench/gpu/README.md) in
place first. Steps, each recorded in DIR/gpu.json as it ends (a step that fails is recorded with its
error and the rest go on; `--budget-s` skips what would start after it):

1. env: GPU, memory, driver, torch and CUDA, cores, the decoder (PyAV's FFmpeg), torchcodec or why not.
2. videos: `--videos` copies of the real clips, each remuxed with its own metadata so that no two
   files are the same bytes (no reuse between copies), under new names.
3. per family (ResNet50 10 frames, R(2+1)D-18 one 16-frame clip, CLIP ViT-B/32 10 frames, Whisper
   tiny.en rows and transcripts; the first three with random weights in their libraries' formats,
   Whisper with the real tiny.en):
   - decode alone: the family's view for every video, one process per core (what `run` does);
   - model alone: the decoded inputs through the extraction runner (units, batches across
     videos, forward, rows; no decoding, no store), at the resolved precision and at float32,
     and the forward passes alone;
   - run: `run_one_shot` end to end into a store, with the GPU's utilisation sampled and its
     peak memory;
   - rows: the same videos (one copy of each real clip) run on the CPU at float32; the minimum
     cosine between GPU and CPU rows (and, for Whisper, transcripts that differ).
   `run` here decodes on the CPU (`--decoder cpu`); with `--steps nvdec`, for the frames and clips
   families, also:
   - decode alone on NVDEC: `decode_video` on the GPU by one thread per core of this process, as
     `run --decoder nvdec` does (on the CPU device in the dry run: torchcodec's software decoder);
   - run on NVDEC: `run_one_shot` with `decoder="nvdec"`, and what its store says decoded the videos;
   - rows: the minimum cosine between the rows of NVDEC-decoded and CPU-decoded frames (goal 0.99).
4. stages: `prepare`, `decode`, then `features` with REELFEAT_DEVICE set, as `dvc repro` runs
   them (worker processes forked from a parent that holds the model on the GPU); rows against `run`'s.
5. peer: video_features' ResNet50 on the same device and videos, if it is in the bundle.

Results persist in `--state` (default /tmp/reelfeat-gpu), so a second call (the Whisper weights
arrive in two parts, see the README) adds to the first; DIR gets the merged gpu.json and table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.weights import clip_vit_b32_folder, torchvision_file  # noqa: E402
from extract.backbones import VideoInput, backbone_config, compute_dtype  # noqa: E402
from extract.core.errors import Failure  # noqa: E402
from extract.executor.local import pool_map, thread_map  # noqa: E402
from extract.media import decoder_version  # noqa: E402
from extract.media.nvdec import unavailable  # noqa: E402
from extract.media.views import View, view_config_json, view_from_params  # noqa: E402
from extract.ondemand.oneshot import run_one_shot  # noqa: E402
from extract.stages.decode import DecodeJob, decode_video  # noqa: E402
from extract.stages.features import ExtractRunner, Source, default_batch  # noqa: E402
from extract.stages.manifest import video_rows  # noqa: E402
from extract.store import StoreReader  # noqa: E402

BUNDLE = ROOT / ".gpu"
MEDIA_SUFFIXES = (".mp4", ".mkv", ".avi")
VIEWS = {  # the demo's views (params.yaml decode.views)
    "frames": {"type": "frames", "num_frames": 10, "max_seconds": 10, "size": [224, 224], "resize": "crop"},
    "clips": {"type": "clips", "num_clips": 1, "clip_len": 16, "max_seconds": 10, "size": [128, 171]},
    "audio": {"type": "audio", "sample_rate": 16000},
}
FAMILIES = {  # family -> (registry name, view)
    "resnet50": ("resnet50", "frames"),
    "clip": ("clip", "frames"),
    "r2plus1d_18": ("r2plus1d_18", "clips"),
    "whisper": ("whisper", "audio"),
}


class Results:
    """gpu.json: every step's figures, kept in the state folder across calls and copied to --out."""

    def __init__(self, state: Path, out: Path) -> None:
        self.path, self.out = state / "gpu.json", out
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def put(self, key: str, value: object) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        shutil.copy(self.path, self.out / "gpu.json")
        print(f"[{key}] {json.dumps(value)[:600]}", flush=True)


def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"


def environment(device: torch.device) -> dict:
    env = {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "decoder": decoder_version(),
        "torchcodec": unavailable(device) or version("torchcodec"),
        "cpu": next((ln.split(":", 1)[1].strip() for ln in sh("lscpu").splitlines() if "Model name" in ln), "?"),
        "precision": str(compute_dtype("auto", device)).removeprefix("torch."),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "driver": sh("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"),
        }
    for name in ("torchvision", "transformers", "openai-whisper", "h5py", "numpy"):
        try:
            env[name] = version(name)
        except Exception:  # noqa: BLE001 - recorded as missing
            env[name] = None
    return env


def build_videos(media: Path, folder: Path, count: int) -> list[Path]:
    """`count` copies of the real clips, round robin, each remuxed (`-c copy`) with its own comment
    tag: the same decoding work, different bytes, so no copy is reused as another."""
    clips = sorted(p for p in media.iterdir() if p.suffix in MEDIA_SUFFIXES)
    if not clips:
        raise FileNotFoundError(f"no clips in {media}")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [
        (clips[i % len(clips)], folder / f"v{i:04d}_{clips[i % len(clips)].stem}{clips[i % len(clips)].suffix}")
        for i in range(count)
    ]

    def remux(pair: tuple[Path, Path]) -> Path:
        """`ffmpeg -i SOURCE -map 0:v -map 0:a? -c copy -metadata comment=...`, with PyAV (the machine has
        no ffmpeg command)."""
        import av

        source, target = pair
        if not target.exists():
            partial = target.with_name(f"{target.stem}.part{target.suffix}")
            with av.open(str(source)) as src, av.open(str(partial), "w", format=src.format.name.split(",")[0]) as dst:
                dst.metadata["comment"] = f"reelfeat gpu copy {target.stem}"
                kept = [s for s in src.streams if s.type in ("video", "audio")]
                copies = {s.index: dst.add_stream_from_template(s) for s in kept}
                for packet in src.demux(kept):
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    packet.stream = copies[packet.stream.index]
                    dst.mux(packet)
            partial.rename(target)
        return target

    for _, result in pool_map(remux, wanted, os.cpu_count() or 1):
        if isinstance(result, Failure):
            raise RuntimeError(str(result))
    return [target for _, target in wanted]


def family_values(family: str, weights: Path, device_precision: str = "auto") -> dict:
    """The backbone's params: local weights, made here with random values where no real ones travel."""
    if family in ("resnet50", "r2plus1d_18"):
        path = torchvision_file(weights, family)
    elif family == "clip":
        path = clip_vit_b32_folder(weights)
    else:
        path = weights / "whisper-tiny.en.pt"
    return {"weights": str(path), "precision": device_precision, "dtype": "float32"}


class GpuSampler:
    """The GPU's utilisation (percent), sampled every 0.2 s by nvidia-smi while a block runs."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> GpuSampler:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            if shutil.which("nvidia-smi"):
                self._proc = subprocess.Popen(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self._proc and self._proc.stdout
        for line in self._proc.stdout:
            if line.strip().isdigit():
                self.samples.append(int(line))

    def __exit__(self, *exc: object) -> None:
        if self._proc:
            self._proc.terminate()
            self._proc.wait()

    def report(self) -> dict:
        if self.device.type != "cuda":
            return {}
        busy = self.samples[2:-2] or self.samples  # the first and last samples straddle start and end
        return {
            "gpu_util_mean": round(float(np.mean(busy)), 1) if busy else None,
            "gpu_util_samples": len(self.samples),
            "gpu_peak_mem_gib": round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2),
        }


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a reelfeat subprocess: this checkout first on the path, the carried packages kept."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_alone(rows: list[dict], view: View, on: torch.device | None = None) -> tuple[dict, dict]:
    """Every video's view decoded by one process per core, one decoder thread each, as `run` beside a GPU;
    or, `on` a device, by one thread per core of this process into tensors there (`run --decoder nvdec`)."""
    cores = os.cpu_count() or 1
    tasks = [DecodeJob(row["id"], row["video"], {"view": view}, 1, device=on and str(on)) for row in rows]
    start = time.perf_counter()
    if on is None:
        decoded = {task.vid: result for task, result in pool_map(decode_video, tasks, cores)}
    else:
        decoded = {task.vid: result for task, result in thread_map(decode_video, tasks, cores)}
        sync(on)
    seconds = time.perf_counter() - start
    decoded = {vid: r if isinstance(r, Failure) else r["view"] for vid, r in decoded.items()}
    failed = {vid: str(r) for vid, r in decoded.items() if isinstance(r, Failure)}
    figures = {
        "videos": len(rows),
        "seconds": round(seconds, 2),
        "videos_per_s": round(len(rows) / seconds, 2),
        "failed": len(failed),
        "failures": dict(list(failed.items())[:3]),
    }
    if on is not None:
        by = [r[2].get("decoded_by", "") for r in decoded.values() if not isinstance(r, Failure)]
        figures["decoded_by"] = {name: by.count(name) for name in sorted(set(by))}
    return decoded, figures


def runner_for(family: str, values: dict, view: View, device: torch.device) -> ExtractRunner:
    """The runner `run` builds (same recipe source as a decoded view), batch size by default."""
    entry, config = backbone_config(FAMILIES[family][0], {**values, "input": "(decoded in this run)"})
    source = Source(Path("bench"), view.kind, [], [], {}, json.loads(view_config_json(view)), view.row_shape())
    backbone = entry.build(config, device)
    backbone.check_input(source.row_shape, source.recipe)
    return ExtractRunner(backbone, source, default_batch(entry.input_kind, device))


def model_alone(family: str, values: dict, view: View, decoded: dict, device: torch.device) -> dict:
    """The runner on decoded inputs in memory: units, batching across videos, forward, rows."""
    runner = runner_for(family, values, view, device)
    videos = [(vid, r) for vid, r in decoded.items() if not isinstance(r, Failure)]

    def inputs(chosen: list) -> Iterator[tuple[str, object]]:
        for vid, (frames, times, _info) in chosen:
            yield vid, runner.units_for(VideoInput(vid, frames, times))

    for _ in runner.run(inputs(videos[:8])):  # warm-up: kernels chosen, caches filled
        pass
    sync(device)
    start = time.perf_counter()
    failed = sum(isinstance(result, Failure) for _, result in runner.run(inputs(videos)))
    sync(device)
    seconds = time.perf_counter() - start
    units = [runner.units_for(VideoInput(vid, f, t))[1].items for vid, (f, t, _i) in videos]
    flat = [u for items in units for u in items]
    batch = runner.batch_size
    from torch.utils.data import default_collate

    batches = [default_collate(flat[i : i + batch]) for i in range(0, len(flat), batch)]
    sync(device)
    start = time.perf_counter()
    for b in batches:
        runner.backbone.embed(b)
    sync(device)
    forward = time.perf_counter() - start
    result = {
        "precision": str(runner.backbone.compute_dtype).removeprefix("torch."),
        "batch": batch,
        "videos": len(videos),
        "inputs": len(flat),
        "seconds": round(seconds, 2),
        "videos_per_s": round(len(videos) / seconds, 2),
        "forward_only_s": round(forward, 3),
        "forward_only_inputs_per_s": round(len(flat) / forward, 1),
        "failed": failed,
    }
    if family == "whisper":
        result["transcripts_batched"] = runner.backbone.transcripts_batched
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def run_end_to_end(
    family: str, values: dict, rows: list[dict], view: View, out: Path, device: torch.device, decoder: str = "cpu"
) -> dict:
    """`run_one_shot` into a fresh store, as `python -m extract run --decoder DECODER` does; the model load
    timed apart."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    runner_for(family, values, view, device)  # the load, as run_one_shot does it: timed apart
    load = time.perf_counter() - start
    with GpuSampler(device) as sampler:
        start = time.perf_counter()
        summary = run_one_shot(FAMILIES[family][0], values, rows, view, out, device=device, decoder=decoder)
        sync(device)
        wall = time.perf_counter() - start
    store = StoreReader(out / FAMILIES[family][0])
    notes = json.loads(store.attrs.get("decoder_notes", "{}"))
    return {
        "decoder": store.attrs.get("decoder"),
        "videos_not_on_the_gpu": len(notes),
        "notes": dict(list(notes.items())[:3]),
        "videos": len(rows),
        "computed": summary.computed,
        "failed": len(summary.failures),
        "failures": dict(list(summary.failures.items())[:3]),
        "wall_s": round(wall, 2),
        "model_load_s": round(load, 2),
        "videos_per_s": round(len(rows) / (wall - load), 2),
        "videos_per_s_with_load": round(len(rows) / wall, 2),
        **sampler.report(),
    }


def compare_rows(store: Path, reference: Path, ids: list[str]) -> dict:
    """Minimum cosine between a store's rows and the reference store's, over the given videos."""
    a, b = StoreReader(store), StoreReader(reference)
    cosines, differ = [], []
    missing = [vid for vid in ids if vid not in a.ids or vid not in b.ids]
    for vid in ids:
        if vid in missing:
            continue
        x, _ = a.get(vid)
        y, _ = b.get(vid)
        if x.shape != y.shape:
            differ.append(f"{vid}: {x.shape} vs {y.shape}")
            continue
        if len(x) == 0:
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
        cosines.append(float(cos.min()))
    result = {
        "videos": len(ids),
        "min_cosine": round(min(cosines), 6) if cosines else None,
        "shape_differs": differ,
        "missing": missing,
    }
    if "transcript" in a.info_names():
        ta, tb = (
            dict(zip(a.ids, a.text("transcript"), strict=True)),
            dict(zip(b.ids, b.text("transcript"), strict=True)),
        )
        result["transcripts_differ"] = [vid for vid in ids if ta.get(vid) != tb.get(vid)]
        result["transcripts"] = {vid: ta.get(vid, "")[:80] for vid in ids[:3]}
    return result


def check_family(
    family: str, rows: list[dict], args: argparse.Namespace, results: Results, device: torch.device, decoded_views: dict
) -> None:
    view_name = FAMILIES[family][1]
    view = view_from_params(view_name, VIEWS[view_name])
    weights = args.state / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    values = family_values(family, weights)
    steps: list[tuple[str, Callable[[], object]]] = []
    if view_name not in decoded_views:

        def decode() -> dict:
            decoded, figures = decode_alone(rows, view)
            decoded_views[view_name] = decoded
            return figures

        steps.append((f"decode/{view_name}", decode))
    steps += [
        (f"{family}/model_auto", lambda: model_alone(family, values, view, decoded_views[view_name], device)),
        (
            f"{family}/model_float32",
            lambda: model_alone(family, {**values, "precision": "float32"}, view, decoded_views[view_name], device),
        ),
        (f"{family}/run", lambda: run_end_to_end(family, values, rows, view, args.state / f"run-{family}", device)),
    ]
    distinct = sorted({row["id"] for row in rows[: args.compare_videos]})
    compare_rows_ = [row for row in rows if row["id"] in distinct]

    def rows_vs_cpu() -> dict:
        cpu_out = args.state / "cpu"
        shutil.rmtree(cpu_out, ignore_errors=True)
        run_one_shot(
            FAMILIES[family][0],
            {**values, "precision": "float32"},
            compare_rows_,
            view,
            cpu_out,
            device=torch.device("cpu"),
        )
        return compare_rows(args.state / f"run-{family}" / FAMILIES[family][0], cpu_out / FAMILIES[family][0], distinct)

    steps.append((f"{family}/rows_vs_cpu_float32", rows_vs_cpu))
    if "nvdec" in args.steps and view_name != "audio":
        steps += nvdec_steps(family, values, view, rows, args, device)
    for key, fn in steps:
        step(key, fn, args, results)
    decoded_views.pop("audio", None)  # big, and read by one family here


def nvdec_steps(
    family: str, values: dict, view: View, rows: list[dict], args: argparse.Namespace, device: torch.device
) -> list[tuple[str, Callable[[], object]]]:
    """Decode alone on NVDEC, `run` on NVDEC, and its rows against `run`'s on CPU-decoded frames."""
    view_name = FAMILIES[family][1]
    nvdec_out = args.state / f"run-{family}-nvdec"

    def decode() -> dict:
        return decode_alone(rows, view, on=device)[1]

    def run() -> dict:
        if device.type != "cuda":
            return {"skipped": "NVDEC decodes beside a model on CUDA; the dry run has none"}
        return run_end_to_end(family, values, rows, view, nvdec_out, device, decoder="nvdec")

    def rows_vs_cpu_decoders() -> dict:
        name = FAMILIES[family][0]
        if device.type != "cuda":
            return {"skipped": "no NVDEC run to compare in the dry run (tests/test_nvdec.py compares on the CPU)"}
        return compare_rows(nvdec_out / name, args.state / f"run-{family}" / name, [r["id"] for r in rows])

    return [
        (f"decode/{view_name}_nvdec", decode),
        (f"{family}/run_nvdec", run),
        (f"{family}/rows_nvdec_vs_cpu_decoders", rows_vs_cpu_decoders),
    ]


def step(key: str, fn: Callable[[], object], args: argparse.Namespace, results: Results) -> None:
    if time.monotonic() > args.deadline:
        results.put(key, {"skipped": f"past --budget-s {args.budget_s}"})
        return
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - recorded, and the other steps go on
        value = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if isinstance(value, dict):
        value["step_s"] = round(time.perf_counter() - start, 1)
    results.put(key, value)


def stages(rows: list[dict], args: argparse.Namespace, device: torch.device) -> dict:
    """prepare, decode and features as `dvc repro` runs them, the model on `device`; rows against `run`'s."""
    project = args.state / "project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    weights = args.state / "weights"
    values = family_values("resnet50", weights)
    import yaml

    params = {
        "prepare": {"manifest": "manifest.csv"},
        "decode": {"views": {"frames": VIEWS["frames"]}},
        "backbones": {"resnet50": {"input": "data/decoded/frames", **values}},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    (project / "manifest.csv").write_text("id,video\n" + "".join(f"{r['id']},{r['video']}\n" for r in rows))
    env = child_env(REELFEAT_DEVICE=device.type)
    times = {}
    for name, cmd in (("prepare", ["prepare"]), ("decode", ["decode"]), ("features", ["features", "resnet50"])):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "extract", *cmd], cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        times[name] = round(time.perf_counter() - start, 2)
        if done.returncode not in (0, 3):  # 3: some videos failed, recorded in the store
            raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr[-1500:]}")
    store = StoreReader(project / "data/features/resnet50")
    result = {
        "videos": len(rows),
        "seconds": times,
        "failures": dict(list(store.failures.items())[:3]),
        "failed": len(store.failures),
        "precision": store.attrs.get("precision"),
        "device": store.attrs.get("device"),
    }
    run_store = args.state / "run-resnet50" / "resnet50"
    if run_store.exists() and StoreReader(run_store).attrs.get("backbone") == "resnet50":
        result["vs_run"] = compare_rows(project / "data/features/resnet50", run_store, [r["id"] for r in rows])
    return result


def peer(rows: list[dict], args: argparse.Namespace, device: torch.device) -> dict:
    """video_features' ResNet50 (its CLI, 10 frames a video) against reelfeat's `run`, same videos, same device."""
    vf = args.bundle / "video_features"
    if not vf.is_dir():
        return {"skipped": f"no video_features in {args.bundle}"}
    work = args.state / "peer"
    shutil.rmtree(work, ignore_errors=True)
    hub = work / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(torchvision_file(args.state / "weights", "resnet50"), hub / "resnet50-0676ba61.pth")
    (work / "videos.txt").write_text("".join(f"{r['video']}\n" for r in rows))
    cmd = [
        sys.executable,
        "main.py",
        "feature_type=resnet",
        "model_name=resnet50",
        "extraction_total=10",
        f"device={'cuda:0' if device.type == 'cuda' else 'cpu'}",
        "on_extraction=save_numpy",
        f"output_path={work / 'out'}",
        f"tmp_path={work / 'tmp'}",
        f"file_with_video_paths={work / 'videos.txt'}",
    ]
    env = {**os.environ, "TORCH_HOME": str(work / "torch")}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=vf, env=env, capture_output=True, text=True, timeout=900)
    vf_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"video_features exited {done.returncode}: {done.stderr[-1500:]}")
    made = len(list((work / "out").rglob("*_resnet.npy")))
    values = family_values("resnet50", args.state / "weights")
    env_cmd = [
        sys.executable,
        "-m",
        "extract",
        "run",
        "resnet50",
        "--manifest",
        str(work / "m.csv"),
        "--frames",
        "10",
        "--weights",
        values["weights"],
        "--out",
        str(work / "reelfeat"),
    ]
    (work / "m.csv").write_text("id,video\n" + "".join(f"{r['id']},{r['video']}\n" for r in rows))
    start = time.perf_counter()
    mine = subprocess.run(env_cmd, cwd=work, env=child_env(), capture_output=True, text=True, timeout=900)
    ours = time.perf_counter() - start
    if mine.returncode not in (0, 3):
        raise RuntimeError(f"reelfeat run exited {mine.returncode}: {mine.stderr[-1500:]}")
    return {
        "videos": len(rows),
        "video_features_s": round(vf_s, 2),
        "video_features_outputs": made,
        "reelfeat_run_s": round(ours, 2),
        "speedup": round(vf_s / ours, 2),
        "note": "whole processes, start-up and model load included, both on the same device",
    }


def table(data: dict) -> str:
    """One markdown table: per family, decode alone, model alone (auto, float32), run, utilisation, rows."""
    env = data.get("env", {})
    machine = env.get("gpu") or env.get("cpu", "?")
    lines = [
        f"machine: {machine}, {env.get('cores')} cores, torch {env.get('torch')}, {env.get('decoder', '')}, "
        f"torchcodec {env.get('torchcodec')}",
        "",
        "| family | machine | decode alone v/s | model alone v/s (precision) | model float32 v/s | run v/s "
        "| run / min(decode, model) | GPU util % | peak GiB | bottleneck | min cosine vs CPU fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nvdec_lines = [
        "",
        "| family | machine | NVDEC decode alone v/s | run on NVDEC v/s | run / min(NVDEC decode, model) "
        "| GPU util % | videos on the CPU | min cosine, NVDEC vs CPU-decoded rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family, (_, view) in FAMILIES.items():
        dec, auto, f32 = (
            data.get(f"decode/{view}", {}),
            data.get(f"{family}/model_auto", {}),
            data.get(f"{family}/model_float32", {}),
        )
        run, rows = data.get(f"{family}/run", {}), data.get(f"{family}/rows_vs_cpu_float32", {})
        if not (auto or run):
            continue
        d, m, r = dec.get("videos_per_s"), auto.get("videos_per_s"), run.get("videos_per_s")
        ratio = f"{r / min(d, m):.0%}" if d and m and r else "-"
        bottleneck = "-" if not (d and m) else ("decoding" if d < m else "model")
        lines.append(
            f"| {family} | {machine} | {d} | {m} ({auto.get('precision')}) | {f32.get('videos_per_s')} | {r} | {ratio} "
            f"| {run.get('gpu_util_mean', '-')} | {run.get('gpu_peak_mem_gib', '-')} | {bottleneck} "
            f"| {rows.get('min_cosine', 'error' if 'error' in rows else '-')} |"
        )
        nv_dec, nv_run = data.get(f"decode/{view}_nvdec", {}), data.get(f"{family}/run_nvdec", {})
        nv_rows = data.get(f"{family}/rows_nvdec_vs_cpu_decoders", {})
        if nv_dec or nv_run:
            nd, nr = nv_dec.get("videos_per_s"), nv_run.get("videos_per_s")
            nv_ratio = f"{nr / min(nd, m):.0%}" if nd and m and nr else "-"
            nvdec_lines.append(
                f"| {family} | {machine} | {nd} | {nr or nv_run.get('skipped', '-')} | {nv_ratio} "
                f"| {nv_run.get('gpu_util_mean', '-')} | {nv_run.get('videos_not_on_the_gpu', '-')} "
                f"| {nv_rows.get('min_cosine', 'error' if 'error' in nv_rows else '-')} |"
            )
    if len(nvdec_lines) > 4:
        lines += nvdec_lines
    stage = data.get("stages", {})
    if "seconds" in stage:
        vs_run = stage.get("vs_run", {}).get("min_cosine", "-")
        lines.append(
            f"\nstages on {machine} ({stage['videos']} videos, model on {stage.get('device')}, "
            f"{stage.get('precision')}): {stage['seconds']}, {stage['failed']} failed, rows vs run: min cosine {vs_run}"
        )
    vf = data.get("peer", {})
    if "speedup" in vf:
        lines.append(
            f"\nvideo_features on {machine} ({vf['videos']} videos, ResNet50, whole processes): "
            f"{vf['video_features_s']} s, reelfeat run {vf['reelfeat_run_s']} s: {vf['speedup']}x"
        )
    errors = {key: value["error"] for key, value in data.items() if isinstance(value, dict) and "error" in value}
    lines += [f"\nerror in {key}: {error[:300]}" for key, error in errors.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--videos", type=int, default=500)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--steps", nargs="+", default=["families", "stages", "peer"], help="and nvdec")
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="the carried folder (bench/gpu/README.md)")
    parser.add_argument("--media", type=Path, default=None, help="real clips (default: BUNDLE/media, ../shared/media)")
    parser.add_argument("--state", type=Path, default=Path("/tmp/reelfeat-gpu"))
    parser.add_argument("--compare-videos", type=int, default=7, help="videos whose rows are compared with the CPU's")
    parser.add_argument("--stage-videos", type=int, default=64)
    parser.add_argument("--peer-videos", type=int, default=56)
    parser.add_argument("--budget-s", type=float, default=480, help="no step starts after this many seconds")
    args = parser.parse_args()
    args.deadline = time.monotonic() + args.budget_s
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    args.state.mkdir(parents=True, exist_ok=True)
    results = Results(args.state, args.out)
    results.put("env", environment(device))
    media = args.media or next(
        (p for p in (args.bundle / "media", ROOT.parent / "shared" / "media") if p.is_dir()), None
    )
    if media is None:
        raise SystemExit("no clips: give --media, or build the bundle (bench/gpu/README.md)")
    start = time.perf_counter()
    videos = build_videos(media, args.state / "videos", args.videos)
    rows = video_rows([str(v) for v in videos], None, args.state / "videos")
    results.put(
        "videos",
        {
            "count": len(rows),
            "distinct_sha256": len({r["sha256"] for r in rows}),
            "clips": sorted({v.name.split("_", 1)[1] for v in videos}),
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    decoded_views: dict = {}
    if "families" in args.steps:
        for family in args.families:
            if family == "whisper" and not (args.state / "weights" / "whisper-tiny.en.pt").exists():
                results.put("whisper/run", {"skipped": "no whisper-tiny.en.pt (bench/gpu/README.md)"})
                continue
            check_family(family, rows, args, results, device, decoded_views)
    decoded_views.clear()
    if "stages" in args.steps:
        step("stages", lambda: stages(rows[: args.stage_videos], args, device), args, results)
    if "peer" in args.steps:
        step("peer", lambda: peer(rows[: args.peer_videos], args, device), args, results)
    text = table(results.data)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
