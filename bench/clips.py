"""Generated test videos for the benchmarks, made once and kept in bench/results/."""

from __future__ import annotations

import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def videos_in(folder: Path) -> list[Path]:
    """The video files in a folder, by name (none where it is absent)."""
    suffixes = (".mp4", ".mkv", ".avi", ".mov")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []


def real_clips() -> list[Path]:
    """The real videos in ../shared/media (none where it is absent)."""
    return videos_in(MEDIA)


def generated_clip(
    path: Path, seconds: int, size: str, *, tone_hz: int | None = None, preset: str = "ultrafast", gop: int = 60
) -> Path:
    """An H.264 testsrc2 clip of `size` (WxH) at 30 fps, a keyframe every `gop` frames, optional sine audio."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}"]
    if tone_hz:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={tone_hz}:duration={seconds}", "-c:a", "aac", "-shortest"]
    cmd += [
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        str(path),
    ]
    subprocess.run(cmd, check=True)
    return path
