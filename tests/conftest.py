"""Shared fixtures: tiny videos made by ffmpeg, and the real media beside the checkout when present."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def make_video(
    path: Path,
    seconds: float = 2.0,
    size: str = "64x48",
    rate: int = 25,
    audio: bool = True,
    gop: int = 12,
    codec: str = "libx264",
    extra: tuple[str, ...] = (),
) -> Path:
    """A testsrc2 video (moving, every frame different) with an optional 440 Hz tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-ac", "2"]
    args += ["-c:v", codec, "-g", str(gop), "-pix_fmt", "yuv420p", *extra]
    if codec == "libx264":
        args += ["-preset", "ultrafast", "-bf", "2"] if "-bf" not in extra else ["-preset", "ultrafast"]
    ffmpeg(*args, "-shortest" if audio else "-an", str(path))
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 25 fps H.264 clip with B-frames, keyframes every 12 frames and stereo audio."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="session")
def shared_media() -> Path:
    media = SHARED / "media"
    if not media.is_dir():
        pytest.skip("../shared/media is absent")
    return media
