"""A seeded corpus of damaged clips (bit flips, truncation at random points, zeroed headers, random
bursts, wrong extensions) through the decode and extract commands: the runs complete, and every
file is either stored or failed with a one-line reason; no traceback, no all-zero or NaN row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED, make_video, save_torchvision

from extract.store import StoreReader

SEED = 20261122


def mutations(data: bytes, rng: np.random.Generator) -> dict[str, bytes]:
    """Damaged copies of one file's bytes, named by what was done."""
    out = {}
    for k in range(3):
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), int(rng.integers(8, 200))):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        out[f"bitflip{k}"] = bytes(flipped)
    for k in range(3):
        out[f"truncated{k}"] = data[: int(len(data) * rng.uniform(0.05, 0.95))]
    for k, length in enumerate((64, int(rng.integers(200, 4096)))):
        out[f"zeroed_header{k}"] = bytes(length) + data[length:]
    for k in range(3):
        burst = bytearray(data)
        start, length = int(rng.integers(0, len(data))), int(rng.integers(100, 5000))
        burst[start : start + length] = rng.integers(0, 256, min(length, len(data) - start), dtype=np.uint8).tobytes()
        out[f"burst{k}"] = bytes(burst)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """A project whose manifest lists the damaged clips (and, as a control, the intact ones)."""
    root = tmp_path_factory.mktemp("mutated")
    clips = root / "clips"
    made = tmp_path_factory.mktemp("originals")
    originals = [
        make_video(made / "h264.mp4", seconds=2, size="64x48"),
        make_video(made / "mpeg4.avi", seconds=2, size="64x48", codec="mpeg4"),
        make_video(made / "bframes.avi", seconds=2, size="64x48", extra=("-bf", "3")),
        make_video(made / "vp9.webm", seconds=2, size="64x48", codec="libvpx-vp9", extra=("-deadline", "realtime")),
    ]
    media = SHARED / "media"
    originals += [media / name for name in ("bikes.mp4", "paddlevideo_example.avi") if (media / name).is_file()]
    rng = np.random.default_rng(SEED)
    names = []
    for original in originals:
        data = original.read_bytes()
        for what, damaged in {"intact": data, **mutations(data, rng)}.items():
            path = clips / f"{original.stem}_{what}{original.suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(damaged)
            names.append(path.name)
        wrong = clips / f"{original.stem}_wrong_extension{'.mkv' if original.suffix != '.mkv' else '.mp4'}"
        wrong.write_bytes(data)
        names.append(wrong.name)
    (root / "manifest.csv").write_text("video\n" + "".join(f"clips/{n}\n" for n in names))
    return root, names


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REELFEAT_FFMPEG_TIMEOUT": "60"}
    return subprocess.run([sys.executable, "-m", "extract", *args], cwd=root, env=env, capture_output=True, text=True)


def assert_every_video_stored_or_failed(store: StoreReader, ids: list[str]) -> None:
    failures = store.failures
    assert sorted(store.ids + list(failures)) == sorted(ids)
    assert all(reason and "\n" not in reason for reason in failures.values())


def test_damaged_clips_are_each_stored_or_recorded(corpus, weights_dir, vggish_folder):
    root, names = corpus
    params = {
        "prepare": {"manifest": "manifest.csv"},
        "decode": {
            "views": {
                "frames": {"type": "frames", "num_frames": 4, "size": [32, 32]},
                "clips": {"type": "clips", "num_clips": 1, "clip_len": 4, "size": [16, 16]},
                "audio": {"type": "audio", "sample_rate": 16000},
            }
        },
        "backbones": {
            "resnet18": {
                "input": "data/decoded/frames",
                "weights": str(save_torchvision(weights_dir, "resnet18")),
                "dtype": "float32",
            },
            "vggish": {"input": "data/decoded/audio", "weights": str(vggish_folder), "postprocess": False},
        },
    }
    (root / "params.yaml").write_text(json.dumps(params))
    ids = [f"clips/{Path(n).stem}" for n in names]
    for args in (
        ["prepare"],
        ["decode", "--allow-failures"],
        *(["features", key, "--allow-failures"] for key in ("resnet18", "vggish")),
    ):
        done = run(root, *args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr

    for view in ("frames", "clips", "audio"):
        store = StoreReader(root / "data" / "decoded" / f"{view}")
        assert_every_video_stored_or_failed(store, ids)
        intact = [vid for vid in ids if vid.endswith("_intact")]
        assert set(intact) <= set(store.ids)  # the controls decode
        if view != "audio":
            for vid in store.ids:
                frames = store.get(vid)[0]
                assert frames.reshape(len(frames), -1).max(axis=1).all(), f"{vid}: an all-black {view} row"
        else:
            assert all(np.isfinite(store.get(vid)[0]).all() for vid in store.ids)
    decoded = StoreReader(root / "data" / "decoded" / "frames")
    assert 0 < len(decoded.failures) < len(ids) - 6  # damage shows, and most damaged clips still decode
    for key in ("resnet18", "vggish"):
        store = StoreReader(root / "data" / "features" / f"{key}")
        assert_every_video_stored_or_failed(store, ids)
        for vid in store.ids:
            rows = store.get(vid)[0]
            assert np.isfinite(rows).all() and (np.abs(rows).max(axis=1) > 0).all(), f"{key} {vid}: a zero or NaN row"
