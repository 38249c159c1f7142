"""Files: how reelfeat writes them and how it hashes them.

Every file reelfeat writes goes through `atomic_path` / `atomic_write`: a temp file in the same
folder, fsynced, renamed over the final name, then the folder fsynced. A killed run leaves the old
file or the new one under the final name, never half of one; its temp files start with a dot and
end in `.tmp`. Videos and weights are identified by their sha256; `HashCache` remembers them by
path, size and modification time, so a rerun reads only the files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from extract.core.errors import UserError

TEMP_SUFFIX = ".tmp"
ID_RULE = "ids are relative paths: folder/name parts, none empty, '.' or '..', and no control characters"


def id_problem(vid: str) -> str | None:
    """Why `vid` cannot name a file under an output folder, or None when it can.

    Writers name files after ids (`export-numpy` writes `<id>_<type>.npy`), so an id that is absolute
    or climbs with `..` would write outside the folder it was given."""
    if any(ord(c) < 32 or ord(c) == 127 for c in vid):
        return "holds a control character"
    if vid.startswith("/"):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in vid.split("/")):
        return "has an empty, '.' or '..' part" if vid else "is empty"
    return None


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused if it would land outside `folder` (a name made from an id)."""
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UserError(f"{name!r} would be written outside {folder}; {ID_RULE}")
    return path


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


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class HashCache:
    """sha256 of files, remembered by (path, size, mtime) in a JSON file between runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._known = {}
        self._seen: dict[str, list] = {}

    def sha256(self, file: str | Path) -> str:
        file = Path(file).resolve()
        stat = file.stat()
        key, stamp = str(file), [stat.st_size, stat.st_mtime_ns]
        entry = self._known.get(key)
        if entry is None or entry[:2] != stamp:
            entry = [*stamp, file_sha256(file)]
        self._seen[key] = entry
        return entry[2]

    def save(self) -> None:
        """Keep the files hashed in this run (the others left the manifest)."""
        if self._seen != self._known:
            write_text(self.path, json.dumps(self._seen, sort_keys=True))
