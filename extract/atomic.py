"""Every file reelfeat writes goes through here: a temp file in the same folder, fsynced, renamed
over the final name, then the folder fsynced. A killed run leaves the old file or the new one under
the final name, never half of one; its temp files start with a dot and end in `.tmp`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def temp_path(path: str | Path) -> Path:
    """Where `path` is written before it is renamed into place (this process's own name)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def stale_temps(path: str | Path) -> list[Path]:
    """Temp files of `path` left by killed runs (never complete, never under a final name)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path) -> Path:
    """fsync `tmp`, rename it to `path`, fsync the folder: the rename survives a crash."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path to write (for libraries that take a path: h5py, torch.save); published on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_args: Any) -> Iterator[IO]:
    """`open(path, mode)` that only replaces `path` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_args) as handle:
        yield handle


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)
