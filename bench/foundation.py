"""Milliseconds per clip or audio window of the foundation backbones, on this machine.

    python bench/foundation.py [--only vjepa2 videoprism ...] [--repeats 2]

Each model is its default checkpoint's architecture (the transformers config class's defaults: V-JEPA 2
ViT-L fpc64-256, VideoPrism B f16r288, PE video L with PE Core L/14-336 frames, CLAP HTSAT-unfused,
AST AudioSet 10-10) with random weights, saved to a folder and loaded through the production
loader (`extract.backbones`), since speed does not depend on the values and the hub is not
reachable here. One input of the size the backbone reads (a clip of its frames, or one window of
audio) goes through `units` and `embed` once to warm up, then `--repeats` times timed. Each line
is JSON with the machine: CPU, native bfloat16 flags and the precision `auto` resolved to.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from bench.peer import machine  # noqa: E402
from extract.backbones import VideoInput, build_backbone  # noqa: E402


def vjepa2(folder: Path) -> tuple[dict, np.ndarray, str]:
    from transformers import VJEPA2Config, VJEPA2Model, VJEPA2VideoProcessor

    VJEPA2Model(VJEPA2Config()).save_pretrained(folder)
    VJEPA2VideoProcessor(size={"shortest_edge": 292}, crop_size={"height": 256, "width": 256}).save_pretrained(folder)
    return {}, clip(64, 292), "clip of 64 frames at 256 px"


def videoprism(folder: Path) -> tuple[dict, np.ndarray, str]:
    from transformers import VideoPrismVisionConfig, VideoPrismVisionModel

    VideoPrismVisionModel(VideoPrismVisionConfig()).save_pretrained(folder)
    return {}, clip(16, 288), "clip of 16 frames at 288 px"


def pe_video(folder: Path) -> tuple[dict, np.ndarray, str]:
    from transformers import PeVideoConfig, PeVideoModel, PeVideoVideoProcessor

    PeVideoModel(PeVideoConfig()).save_pretrained(folder)
    steps = {"size": {"height": 336, "width": 336}, "do_resize": True, "do_rescale": True, "do_normalize": True}
    PeVideoVideoProcessor(**steps, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return {}, clip(16, 336), "clip of 16 frames at 336 px"


def clap(folder: Path) -> tuple[dict, np.ndarray, str]:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    ClapModel(ClapConfig()).save_pretrained(folder)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(folder)
    return {}, audio(10.0, 48000), "10 s window of 48 kHz audio"


def ast(folder: Path) -> tuple[dict, np.ndarray, str]:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    ASTModel(ASTConfig()).save_pretrained(folder)
    ASTFeatureExtractor().save_pretrained(folder)
    return {"output": "embedding"}, audio(10.24, 16000), "10.24 s window of 16 kHz audio"


def clip(frames: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, frames, size, size, 3), dtype=np.uint8)


def audio(seconds: float, rate: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * rate))).astype(np.float32)


def once(backbone, video: VideoInput) -> float:
    """Seconds for one input through `units` (preprocessing) and `embed` (the model)."""
    start = time.perf_counter()
    backbone.embed(default_collate(backbone.units(video).items))
    return time.perf_counter() - start


MODELS = {"vjepa2": vjepa2, "videoprism": videoprism, "pe_video": pe_video, "clap": clap, "ast": ast}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    where = machine()
    torch.manual_seed(0)
    for name in args.only:
        with tempfile.TemporaryDirectory(prefix=f"reelfeat-{name}-") as folder:
            extra, rows, unit = MODELS[name](Path(folder))
            backbone = build_backbone(name, {"input": "bench", "weights": folder, **extra}, torch.device("cpu"))
            timestamps = np.array([5.0], np.float32) if rows.ndim == 5 else None
            video = VideoInput(vid="bench", rows=rows, timestamps=timestamps)

            once(backbone, video)  # warm-up
            seconds = [once(backbone, video) for _ in range(args.repeats)]
            parameters = sum(p.numel() for p in backbone.model.parameters())
            record = {"backbone": name, "per": unit, "ms": round(1000 * float(np.median(seconds)), 1)}
            record |= {"dim": backbone.dim, "parameters_m": round(parameters / 1e6, 1), **where}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
