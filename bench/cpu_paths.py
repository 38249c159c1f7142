"""ResNet50 on this CPU: every way reelfeat could run it, and the one `precision: auto` takes.

    python bench/cpu_paths.py [--frames 130] [--batch 8] [--all]

The model is the one `run resnet50` builds (random weights), fed `--frames` 224x224 frames through its
weights' transforms (frames of the real clips in ../shared/media where present, else random), in
batches of `--batch`, on every core. Each candidate prints its set-up seconds (exporting, loading,
tracing: once per process, so part of any end-to-end figure), its seconds for the frames, and the
lowest cosine of its rows against eager float32. Candidates:
- `eager float32` and `eager bfloat16` (torch, channels-last, batch norms folded: what `run` runs
  where the precision resolves to bfloat16, and ran for float32 before ONNX Runtime);
- `onnxruntime float32` and `onnxruntime int8` as `extract.backbones.onnx_runtime` runs them, twice:
  `cold` exports (and quantizes) into an empty cache, `cached` loads what the first one kept;
- with `--all`: `jit.freeze` (traced, frozen, `optimize_for_inference`) and `torch.compile` (inductor).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.clips import real_clips  # noqa: E402
from bench.weights import torchvision_file  # noqa: E402
from extract.backbones import compute_dtype  # noqa: E402
from extract.backbones.image import fold_batch_norms, load_torchvision, strip_classifier  # noqa: E402
from extract.backbones.onnx_runtime import OnnxClassifier, cache_key  # noqa: E402
from extract.core.files import file_sha256  # noqa: E402


def timed(run, batches: list[torch.Tensor]) -> tuple[float, np.ndarray]:
    run(batches[0])  # one warm-up batch, as every side gets
    start = time.perf_counter()
    rows = [run(batch) for batch in batches]
    return time.perf_counter() - start, np.concatenate(rows)


def lowest_cosine(rows: np.ndarray, reference: np.ndarray) -> float:
    a = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def frames(count: int, transforms) -> torch.Tensor:
    """`count` frames of the real clips (the same number from each), else random ones, transformed."""
    from extract import media
    from extract.media.views import FramesView

    clips = real_clips()
    if not clips:
        pixels = torch.randint(0, 256, (count, 3, 224, 224), dtype=torch.uint8)
    else:
        view, taken = FramesView(num_frames=-(-count // len(clips)), max_seconds=None, size=(224, 224)), []
        for clip in clips:
            meta = media.probe(clip)
            taken.append(media.decode_frames(clip, meta, view.plan(meta)[0], view.size, view.resize)[0])
        pixels = torch.from_numpy(np.concatenate(taken)[:count]).permute(0, 3, 1, 2)
    return transforms(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=130)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--all", action="store_true", help="also jit.freeze and torch.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "auto resolves to": str(compute_dtype("auto", torch.device("cpu"))).removeprefix("torch."),
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCH_HOME"] = str(Path(tmp) / "torch")  # an empty cache: the cold runs export
        weights = torchvision_file(Path(tmp), "resnet50")
        model, member, _ = load_torchvision("resnet50", str(weights), "bench")
        strip_classifier(model)
        model = fold_batch_norms(model).to(memory_format=torch.channels_last)
        inputs = frames(args.frames, member.transforms())
        batches = [
            inputs[i : i + args.batch].contiguous(memory_format=torch.channels_last)
            for i in range(0, args.frames, args.batch)
        ]

        def eager(dtype: torch.dtype):
            def run(batch):
                with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                    return model(batch).float().numpy()

            return run

        def onnx(precision: str):
            def build():
                fresh, _, _ = load_torchvision("resnet50", str(weights), "bench")
                strip_classifier(fresh)
                return fresh

            key = cache_key("resnet50", file_sha256(weights))
            normalize = (list(member.transforms().mean), list(member.transforms().std))
            runtime = OnnxClassifier(build, key, (224, 224), normalize, precision, torch.get_num_threads())
            return lambda batch: runtime(batch.contiguous().numpy())

        candidates = {
            "eager float32": lambda: eager(torch.float32),
            "eager bfloat16": lambda: eager(torch.bfloat16),
            "onnxruntime float32, cold": lambda: onnx("float32"),
            "onnxruntime float32, cached": lambda: onnx("float32"),
            "onnxruntime int8, cold": lambda: onnx("int8"),
            "onnxruntime int8, cached": lambda: onnx("int8"),
        }
        if args.all:

            def frozen():
                with torch.no_grad():
                    traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, batches[0])))
                return lambda batch: traced(batch).detach().numpy()

            def compiled():
                fn = torch.compile(model)
                with torch.inference_mode():
                    fn(batches[0])  # compiles here
                    fn(batches[-1])  # and for the last, smaller batch
                return lambda batch: fn(batch).numpy()

            candidates |= {"jit.freeze": frozen, "torch.compile": compiled}
        reference = None
        for name, make in candidates.items():
            start = time.perf_counter()
            run = make()
            setup = time.perf_counter() - start
            seconds, rows = timed(run, batches)
            reference = rows if reference is None else reference
            record = {
                "candidate": name,
                "setup_s": round(setup, 2),
                "seconds": round(seconds, 2),
                "ms_per_frame": round(1000 * seconds / args.frames, 1),
                "lowest_cosine": round(lowest_cosine(rows, reference), 6),
                "with_setup_s": round(setup + seconds, 2),
                **machine,
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
