"""Float32 ResNet50 on this CPU: today's eager path against the other ways to run the same model.

    python bench/cpu_paths.py [--frames 130] [--batch 8]

The model is the one `run resnet50` builds (random weights, batch norms folded, channels-last),
fed `--frames` random 224x224 frames in batches of `--batch`, on every core. Each candidate prints
its set-up seconds (tracing, compiling, exporting: paid once per process, so part of any
end-to-end figure), its seconds for the frames, and the cosine of its rows against eager float32
(the lowest over rows). Candidates: `eager` (today), `jit.freeze` (TorchScript traced, frozen,
`optimize_for_inference`), `torch.compile` (inductor, default mode), and `onnxruntime` (where
`onnxruntime`, `onnx` and `onnxscript` are installed; they are not reelfeat's dependencies: exported
with torch's exporter, run on ONNX Runtime's CPU provider).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.weights import torchvision_file  # noqa: E402
from extract.backbones import build_backbone  # noqa: E402


def timed(run, batches: list[torch.Tensor]) -> tuple[float, np.ndarray]:
    run(batches[0])  # one warm-up batch, as every side gets
    start = time.perf_counter()
    rows = [run(batch) for batch in batches]
    return time.perf_counter() - start, np.concatenate(rows)


def lowest_cosine(rows: np.ndarray, reference: np.ndarray) -> float:
    a = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=130)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = torchvision_file(Path(tmp), "resnet50")
        values = {"input": "(frames given here)", "weights": str(weights), "precision": "float32"}
        model = build_backbone("resnet50", values, torch.device("cpu")).model
        frames = torch.rand(args.frames, 3, 224, 224)
        batches = [
            frames[i : i + args.batch].contiguous(memory_format=torch.channels_last)
            for i in range(0, args.frames, args.batch)
        ]
        sample = batches[0]

        def inference(fn):
            def run(batch):
                with torch.inference_mode():
                    return fn(batch).numpy()

            return run

        candidates = {"eager": lambda: inference(model)}

        def frozen():
            with torch.no_grad():
                traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, sample)))
            return lambda batch: traced(batch).detach().numpy()

        def compiled():
            fn = torch.compile(model)
            with torch.inference_mode():
                fn(sample)  # compiles here
                fn(batches[-1])  # and for the last, smaller batch
            return inference(fn)

        def onnx():
            import onnxruntime

            path = Path(tmp) / "resnet50.onnx"
            torch.onnx.export(model, (sample,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return lambda batch: session.run(None, {"x": batch.contiguous().numpy()})[0]

        candidates.update({"jit.freeze": frozen, "torch.compile": compiled, "onnxruntime": onnx})
        reference = None
        flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
        machine = {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags,
        }
        for name, make in candidates.items():
            start = time.perf_counter()
            try:
                run = make()
            except Exception as exc:  # a candidate this machine cannot run is reported, not fatal
                print(json.dumps({"candidate": name, "error": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
                continue
            setup = time.perf_counter() - start
            seconds, rows = timed(run, batches)
            reference = rows if reference is None else reference
            record = {
                "candidate": name,
                "setup_s": round(setup, 2),
                "seconds": round(seconds, 2),
                "ms_per_frame": round(1000 * seconds / args.frames, 1),
                "lowest_cosine": round(lowest_cosine(rows, reference), 6),
                **machine,
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
