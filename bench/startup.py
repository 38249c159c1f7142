"""Where `python -m extract run` spends its first seconds: a timeline of one whole process.

    python bench/startup.py [--set generated|real] [--repeats 3] [--root PATH/OTHER-CHECKOUT]

Runs `python -m extract run resnet50 VIDEO... --frames 10` (random ResNet50 weights, CPU, empty
output folder) under a thin timer that notes, in seconds from the process start:
- `model`: the backbone is built, its weights loaded, and the store's builder made;
- `first video`: the first decoded video reaches the model's process;
- `first batch`: the first batch enters the model;
- `done`: the process ends.
The timer wraps `oneshot._inputs` and the backbone's `embed` from outside, imports nothing `run`
would not, and changes nothing they do. `--root` times another checkout (for example the commit before a change) with
the same timer. Medians of the repeats; prints one JSON line per run and one for the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peer import clip_sets  # noqa: E402
from bench.weights import torchvision_file  # noqa: E402

# runs inside the timed process: START is the wall clock when the interpreter was launched
TIMER = r"""
import atexit, json, os, runpy, sys, time
start = float(os.environ["STARTUP_T0"])
marks = {}
def mark(name):
    marks.setdefault(name, round(time.time() - start, 3))
import extract.ondemand.oneshot as oneshot
inputs = oneshot._inputs
def timed_inputs(runner, decoded):
    mark("model")  # called once the model and the store's builder are made
    embed = runner.backbone.embed
    def timed_embed(batch):
        mark("first batch")
        return embed(batch)
    runner.backbone.embed = timed_embed
    def timed(pairs):
        for pair in pairs:
            mark("first video")
            yield pair
    return timed(inputs(runner, decoded))
oneshot._inputs = timed_inputs
def report():
    mark("done")
    print("STARTUP " + json.dumps(marks), file=sys.stderr, flush=True)
# `run` ends with os._exit after the atexit handlers (extract/core/cli.py exit_process): report from one
atexit.register(report)
sys.argv = ["extract", *sys.argv[1:]]
runpy.run_module("extract", run_name="__main__")
"""


def timeline(root: Path, videos: list[Path], weights: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "REELFEAT_DEVICE": "cpu", "STARTUP_T0": repr(time.time())}
    command = [sys.executable, "-c", TIMER, "run", "resnet50", *map(str, videos)]
    command += ["--weights", str(weights), "--frames", "10", "--out", str(out)]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    line = next(x for x in done.stderr.splitlines() if x.startswith("STARTUP "))
    return json.loads(line.removeprefix("STARTUP "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=["generated", "real"], default="generated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose `extract` is timed")
    args = parser.parse_args()
    videos = clip_sets([args.set])[args.set]  # the peer benchmark's sets
    runs = []
    with tempfile.TemporaryDirectory(prefix="reelfeat-startup-") as tmp:
        weights = torchvision_file(Path(tmp), "resnet50")
        for repeat in range(args.repeats):
            marks = timeline(args.root.resolve(), videos, weights, Path(tmp) / f"out{repeat}")
            print(json.dumps({"set": args.set, "videos": len(videos), "root": str(args.root), **marks}), flush=True)
            runs.append(marks)
    medians = {name: round(statistics.median(r[name] for r in runs), 2) for name in runs[0]}
    print(json.dumps({"set": args.set, "root": str(args.root), "median": medians}))


if __name__ == "__main__":
    main()
