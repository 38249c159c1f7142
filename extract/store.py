"""Stores of per-video rows: a folder of immutable HDF5 shards plus an index. The only module that
knows the layout.

    <store>/index.json          which videos are live, in manifest order, and where each one's rows
                                are (shard, position, row count); failures; the store's attributes
                                and layout. Written last and atomically: a reader sees the old store
                                or the new one.
    <store>/shard-<sha256>.h5   immutable, named by a hash of its bytes; the rows of some videos:
        /ids            (n,)     utf-8 video ids
        /offsets        (n+1,)   int64; rows of video i are feats[offsets[i]:offsets[i+1]]
        /feats          (T, ...) their rows: frames (T,H,W,3), clips (T,L,H,W,3), samples (T,), features (T,D)
        /jpeg           (T*F,)   in a view stored as JPEG, instead of /feats: one JPEG per frame
        /timestamps     (T,)     float32 seconds of each row
        /source_sha256  (n,)     content hash of what each video's rows were made from
        /info/<name>    (n,)     per-video facts (duration, has_audio, ...)
        /text/<name>    (n,)     per-video text (transcripts, segments as JSON, notes)
        attrs: schema_version, config (the store's reuse key), layout (JSON)
    <store>/.lock               held (flock) by the run writing the store; .dvcignore keeps it out of DVC

A run that adds videos writes new shards and a new index and never rewrites a shard of unchanged
videos, so DVC (which hashes a folder output file by file) caches and pushes only the new shards.
A video that changed or left the manifest leaves the index; a shard is rewritten without its dead
rows once more than half of them are dead, and deleted once none is live. A run with nothing to
change writes nothing. A shard that is missing, truncated or unreadable is detected (its size is
in the index), and a builder computes its videos again.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sys
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import h5py
import numpy as np

from extract.errors import UserError
from extract.files import TEMP_SUFFIX, publish, temp_path, write_text

SCHEMA_VERSION = 2
INDEX = "index.json"
LOCK = ".lock"
STORAGES = ("raw", "jpeg")
COMPACT_DEAD_SHARE = 0.5  # a shard is rewritten once more than this share of its rows is dead
_STR = h5py.string_dtype("utf-8")
_BYTES = h5py.vlen_dtype(np.uint8)
_PLAIN = {"track_times": False}  # no wall-clock times in a file: the same rows give the same bytes


def checkpoint_seconds() -> float:
    """How often a run closes its current shard, so a killed run loses at most this: REELFEAT_CHECKPOINT_S."""
    return float(os.environ.get("REELFEAT_CHECKPOINT_S", 30))


def shard_bytes() -> int:
    """Size at which a shard is closed and the next begun: REELFEAT_SHARD_MB (see the README for why 64)."""
    return int(float(os.environ.get("REELFEAT_SHARD_MB", 64)) * (1 << 20))


class StoreError(UserError):
    """A store that is missing, of another schema, damaged, being written, or asked for a video it lacks."""


def rows_digest(rows: Iterable[tuple[str, str]]) -> str:
    """sha256 of (id, source sha256) pairs: which videos, in which version, a store covers."""
    digest = hashlib.sha256()
    for vid, sha in rows:
        digest.update(f"{vid}\t{sha}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Layout:
    """What every row of a store looks like and how it is kept."""

    row_shape: tuple[int, ...]
    dtype: str
    info_dtypes: dict[str, str] = field(default_factory=dict)  # per-video columns; "str" for text
    storage: str = "raw"  # raw | jpeg (uint8 frames only, one JPEG per frame)
    jpeg_quality: int = 90

    @classmethod
    def of(cls, values: Mapping) -> Layout:
        return cls(**{**values, "row_shape": tuple(values["row_shape"]), "info_dtypes": dict(values["info_dtypes"])})

    @property
    def frames_per_row(self) -> int:
        """JPEG images per row: 1 for a frame, L for a clip of L frames."""
        return int(np.prod(self.row_shape[:-3], dtype=np.int64))


# --- shards -----------------------------------------------------------------------------------


class _ShardWriter:
    """Collects one shard's rows (at most REELFEAT_SHARD_MB) and writes it on `close`, under a temp name
    first, then as shard-<sha256>.h5. Written once and whole, its datasets are contiguous and exactly
    their size: a shard of two videos costs their rows plus a few KB, not whole HDF5 chunks."""

    def __init__(self, folder: Path, layout: Layout, config: str) -> None:
        self.folder, self.layout, self.config = folder, layout, config
        self.rows: list[np.ndarray] = []  # per video: its rows, or its JPEG images
        self.times: list[np.ndarray] = []
        self.ids: list[str] = []
        self.offsets = [0]
        self.sha: list[str] = []
        self.info: dict[str, list] = {name: [] for name in layout.info_dtypes}
        self.bytes = 0
        self.started = time.monotonic()

    def add(self, vid: str, feats: np.ndarray, timestamps: np.ndarray, sha: str, info: Mapping[str, object]) -> None:
        if len(feats) != len(timestamps):
            raise ValueError(f"{vid}: {len(feats)} rows but {len(timestamps)} timestamps")
        if self.layout.storage == "jpeg":
            images = _encode_jpeg(np.asarray(feats).reshape(-1, *self.layout.row_shape[-3:]), self.layout)
            blobs = np.empty(len(images), dtype=object)  # filled one by one: equal lengths must not stack
            for k, image in enumerate(images):
                blobs[k] = image
            self.rows.append(blobs)
            self.bytes += sum(len(image) for image in images)
        else:  # a copy: the caller may reuse its buffer before the shard is written
            rows = np.array(feats, self.layout.dtype).reshape(len(feats), *self.layout.row_shape)
            self.rows.append(rows)
            self.bytes += rows.nbytes
        self.times.append(np.asarray(timestamps, np.float32))
        self.ids.append(vid)
        self.offsets.append(self.offsets[-1] + len(feats))
        self.sha.append(sha)
        for name in self.layout.info_dtypes:
            self.info[name].append(info[name])

    def close(self) -> str:
        """Write the shard, publish it, and return its name."""
        tmp = temp_path(self.folder / "shard.h5")
        try:
            with h5py.File(tmp, "w", libver="v110") as h5:
                h5.attrs["schema_version"] = SCHEMA_VERSION
                h5.attrs["config"] = self.config
                h5.attrs["layout"] = json.dumps(asdict(self.layout), sort_keys=True)
                if self.layout.storage == "jpeg":
                    self._concatenated(h5, "jpeg", (), _BYTES)
                else:
                    self._concatenated(h5, "feats", self.layout.row_shape, self.layout.dtype)
                h5.create_dataset("timestamps", data=np.concatenate([[], *self.times]).astype(np.float32), **_PLAIN)
                h5.create_dataset("ids", data=np.asarray(self.ids, dtype=object), dtype=_STR, **_PLAIN)
                h5.create_dataset("offsets", data=np.asarray(self.offsets, np.int64), **_PLAIN)
                h5.create_dataset("source_sha256", data=np.asarray(self.sha, dtype=object), dtype=_STR, **_PLAIN)
                info, text = h5.create_group("info", track_order=True), h5.create_group("text", track_order=True)
                for name, dtype in self.layout.info_dtypes.items():
                    if dtype == "str":
                        text.create_dataset(name, data=np.asarray(self.info[name], dtype=object), dtype=_STR, **_PLAIN)
                    else:
                        info.create_dataset(name, data=np.asarray(self.info[name], dtype=dtype), **_PLAIN)
            with open(tmp, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            name = f"shard-{digest[:32]}.h5"
            publish(tmp, self.folder / name)
            return name
        finally:
            tmp.unlink(missing_ok=True)

    def _concatenated(self, h5: h5py.File, name: str, row_shape: tuple[int, ...], dtype) -> None:
        """One dataset of every video's rows, filled video by video (no second copy in memory)."""
        total = sum(len(rows) for rows in self.rows)
        data = h5.create_dataset(name, (total, *row_shape), dtype=dtype, **_PLAIN)
        start = 0
        for rows in self.rows:
            if dtype is _BYTES:  # h5py would stack equal-length images into one 2-D array
                for k, image in enumerate(rows):
                    data[start + k] = image
            elif len(rows):
                data[start : start + len(rows)] = rows
            start += len(rows)


def _encode_jpeg(frames: np.ndarray, layout: Layout) -> list[np.ndarray]:
    from PIL import Image  # Pillow, not torch: decoding processes stay free of torch

    images = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=layout.jpeg_quality)
        images.append(np.frombuffer(buffer.getvalue(), np.uint8))
    return images


def _decode_jpeg(images: Iterable[np.ndarray]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(image.tobytes())).convert("RGB")) for image in images])


@dataclass(frozen=True)
class _Extent:
    """Where a contiguous dataset's bytes start in its shard file, and what one of its rows is. Rows are
    read with `os.preadv` straight into the array that returns them: no HDF5 handle stays open."""

    offset: int | None  # None: nothing was allocated (no rows)
    dtype: np.dtype
    row_shape: tuple[int, ...]

    @classmethod
    def of(cls, dataset: h5py.Dataset) -> _Extent:
        return cls(dataset.id.get_offset(), dataset.dtype, dataset.shape[1:])

    def read(self, path: Path, runs: list[tuple[int, int]]) -> np.ndarray:
        """Rows [start, stop) of each run, one after another."""
        out = np.empty((sum(stop - start for start, stop in runs), *self.row_shape), self.dtype)
        if not len(out):
            return out
        row_bytes = out[:1].nbytes
        fd = os.open(path, os.O_RDONLY)
        try:
            at = 0
            for start, stop in runs:
                target = memoryview(out[at : at + stop - start]).cast("B")
                if os.preadv(fd, [target], self.offset + start * row_bytes) != len(target):
                    raise StoreError(f"{path} is damaged (shorter than its rows): rerun the stage that writes it")
                at += stop - start
        finally:
            os.close(fd)
        return out


class _Shard:
    """What a reader needs of one shard, read once: its ids, offsets, and where its rows are."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with h5py.File(path, "r") as h5:
                if int(h5.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                    raise StoreError(f"{path}: shard schema {h5.attrs.get('schema_version')}, not {SCHEMA_VERSION}")
                self.layout = Layout.of(json.loads(h5.attrs["layout"]))
                self.config = str(h5.attrs["config"])
                self.ids = list(h5["ids"].asstr()[:])
                self.offsets = h5["offsets"][:]
                self.sha = list(h5["source_sha256"].asstr()[:])
                self.times = _Extent.of(h5["timestamps"])
                self.data = None if "jpeg" in h5 else _Extent.of(h5["feats"])
                rows = len(h5["timestamps"])
                stored = len(h5["jpeg"]) // self.layout.frames_per_row if "jpeg" in h5 else len(h5["feats"])
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
        if len(self.offsets) != len(self.ids) + 1 or self.offsets[-1] != rows or stored != rows:
            raise StoreError(f"{path} is damaged: its offsets and rows disagree")

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    def _span(self, position: int) -> tuple[int, int]:
        return int(self.offsets[position]), int(self.offsets[position + 1])

    def rows(self, position: int, select: np.ndarray | None = None) -> np.ndarray:
        """Rows of the video at `position`; `select` (sorted row numbers within the video) reads only those."""
        start, end = self._span(position)
        wanted = np.arange(start, end) if select is None else start + np.asarray(select, np.int64)
        if self.data is not None:
            runs = np.split(wanted, np.flatnonzero(np.diff(wanted) != 1) + 1) if len(wanted) else []
            return self.data.read(self.path, [(int(run[0]), int(run[-1]) + 1) for run in runs])
        per_row = self.layout.frames_per_row
        frames = (wanted[:, None] * per_row + np.arange(per_row)[None]).ravel()
        if not len(frames):
            return np.zeros((0, *self.layout.row_shape), np.uint8)
        with h5py.File(self.path, "r") as h5:
            images = h5["jpeg"][frames]
        return _decode_jpeg(images).reshape(len(wanted), *self.layout.row_shape)

    def all_rows(self) -> np.ndarray:
        """Every row of the shard, dead ones included, in one read."""
        if self.data is not None:
            return self.data.read(self.path, [(0, self.num_rows)])
        return np.concatenate([self.rows(i) for i in range(len(self.ids))]) if self.ids else self.rows(0)

    def timestamps(self, position: int) -> np.ndarray:
        return self.times.read(self.path, [self._span(position)])

    def column(self, name: str, positions: np.ndarray) -> np.ndarray | list[str]:
        """Per-video fact or text `name` of the videos at `positions` (in that order)."""
        order = np.argsort(positions, kind="stable")
        wanted = positions[order].tolist()
        with h5py.File(self.path, "r") as h5:
            if name in h5["text"]:
                values = h5["text"][name].asstr()[wanted] if wanted else []
                out = [""] * len(positions)
                for k, i in enumerate(order):
                    out[i] = values[k]
                return out
            dataset = h5["info"][name]
            out = np.empty(len(positions), dtype=dataset.dtype)
            out[order] = dataset[wanted] if wanted else []
        return out

    def values(self, position: int) -> dict[str, object]:
        """Every per-video column of one video (for copying it into another shard)."""
        return {name: self.column(name, np.array([position]))[0] for name in self.layout.info_dtypes}


# --- the index --------------------------------------------------------------------------------


@dataclass
class _Entry:
    """Where one live video's rows are."""

    vid: str
    sha: str
    shard: str
    position: int
    rows: int


@dataclass
class _Index:
    attrs: dict
    layout: Layout
    shards: dict[str, dict]  # name -> {"bytes", "videos", "rows"}: what the shard file holds
    entries: list[_Entry]
    failures: dict[str, str]

    def dumps(self) -> str:
        names = sorted(self.shards)
        number = {name: i for i, name in enumerate(names)}
        body = {
            "schema_version": SCHEMA_VERSION,
            "attrs": self.attrs,
            "layout": asdict(self.layout),
            "shards": [{"name": name, **self.shards[name]} for name in names],
            "videos": {
                "id": [e.vid for e in self.entries],
                "sha256": [e.sha for e in self.entries],
                "shard": [number[e.shard] for e in self.entries],
                "position": [e.position for e in self.entries],
                "rows": [e.rows for e in self.entries],
            },
            "failures": self.failures,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def load(cls, folder: Path) -> _Index:
        path = folder / INDEX
        if not path.is_file():
            if (folder.with_suffix(".h5")).is_file() or folder.suffix == ".h5":
                raise StoreError(
                    f"{folder} is a single-file store from before reelfeat kept shards: rerun the stage that "
                    "writes it (dvc repro) to rebuild it as a folder, then delete the .h5 file"
                )
            raise StoreError(f"no store at {folder}: run the stage that writes it (dvc repro)")
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise StoreError(f"{path} is not a store index (damaged?): rerun the stage that writes it") from None
        if body.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{folder} has store schema {body.get('schema_version')}, this reelfeat reads {SCHEMA_VERSION}: "
                "delete it and rerun the stage that writes it"
            )
        names = [shard["name"] for shard in body["shards"]]
        videos = body["videos"]
        entries = [
            _Entry(vid, sha, names[shard], position, rows)
            for vid, sha, shard, position, rows in zip(
                videos["id"], videos["sha256"], videos["shard"], videos["position"], videos["rows"], strict=True
            )
        ]
        shards = {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in body["shards"]}
        return cls(body["attrs"], Layout.of(body["layout"]), shards, entries, body["failures"])


# --- reading ----------------------------------------------------------------------------------


class StoreReader:
    """Reads a store folder. A shard's ids and offsets are read the first time one of its videos is;
    rows are then read with one `preadv` each, so no file stays open and reading one video's rows
    touches one shard."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            _Index.load(self.path)  # raises the error that says what is there instead
        self._index = _Index.load(self.path)
        self._position = {entry.vid: i for i, entry in enumerate(self._index.entries)}
        self._shards: dict[str, _Shard] = {}
        for name, facts in self._index.shards.items():
            file = self.path / name
            if not file.is_file() or file.stat().st_size != facts["bytes"]:
                what = "missing" if not file.is_file() else f"{file.stat().st_size} bytes, not {facts['bytes']}"
                raise StoreError(f"{file} is damaged ({what}): rerun the stage that writes {self.path} (dvc repro)")
        self.rows_read = 0  # rows read through `get`, `read` and `iter_rows`: how much of the store a caller touched

    def _shard(self, name: str) -> _Shard:
        if name not in self._shards:
            self._shards[name] = _Shard(self.path / name)
        return self._shards[name]

    @property
    def attrs(self) -> dict[str, object]:
        return {**self._index.attrs, "schema_version": SCHEMA_VERSION}

    @property
    def recipe(self) -> dict:
        """How the rows were made (see `extract.recipe`): a feature store's recipe, a decoded store's view."""
        attrs = self._index.attrs
        return json.loads(str(attrs.get("recipe") or attrs.get("config") or "{}"))

    @property
    def layout(self) -> Layout:
        return self._index.layout

    @property
    def ids(self) -> list[str]:
        return [entry.vid for entry in self._index.entries]

    @property
    def source_sha256(self) -> list[str]:
        return [entry.sha for entry in self._index.entries]

    @property
    def row_counts(self) -> np.ndarray:
        """Rows of each video, in `ids` order (from the index: no shard is opened)."""
        return np.array([entry.rows for entry in self._index.entries], np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """Where each video's rows would start if the live rows were laid end to end, in `ids` order."""
        return np.concatenate([[0], np.cumsum(self.row_counts)]).astype(np.int64)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self._index.layout.row_shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._index.layout.dtype)

    @property
    def num_rows(self) -> int:
        return int(self.row_counts.sum())

    @property
    def failures(self) -> dict[str, str]:
        return dict(self._index.failures)

    @property
    def shards(self) -> dict[str, dict]:
        """Shard file name -> {"bytes", "videos", "rows"} as the index lists them."""
        return {name: dict(facts) for name, facts in self._index.shards.items()}

    def __len__(self) -> int:
        return len(self._index.entries)

    def __contains__(self, vid: object) -> bool:
        return vid in self._position

    def _entry(self, vid: str) -> _Entry:
        if vid not in self._position:
            why = self._index.failures.get(vid)
            raise StoreError(f"{self.path}: no rows for {vid!r}" + (f" (it failed: {why})" if why else ""))
        return self._index.entries[self._position[vid]]

    def get(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, timestamps) of one video."""
        entry = self._entry(vid)
        shard = self._shard(entry.shard)
        self.rows_read += entry.rows
        return shard.rows(entry.position), shard.timestamps(entry.position)

    def read(self, vid: str, select: np.ndarray | None = None) -> np.ndarray:
        """Rows of one video in the store's dtype; `select` (sorted row numbers) reads only those rows."""
        entry = self._entry(vid)
        self.rows_read += entry.rows if select is None else len(select)
        return self._shard(entry.shard).rows(entry.position, select)

    def iter_rows(self) -> Iterator[tuple[str, np.ndarray]]:
        """(id, rows) of every video, a shard at a time (each shard read in one go), in no fixed order."""
        by_shard: dict[str, list[_Entry]] = {}
        for entry in self._index.entries:
            by_shard.setdefault(entry.shard, []).append(entry)
        for name, entries in sorted(by_shard.items()):
            shard = self._shard(name)
            block = shard.all_rows()
            for entry in entries:
                self.rows_read += entry.rows
                yield entry.vid, block[shard.offsets[entry.position] : shard.offsets[entry.position + 1]]

    def _column(self, name: str) -> list:
        out: list = [None] * len(self)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for i, entry in enumerate(self._index.entries):
            by_shard.setdefault(entry.shard, []).append((i, entry.position))
        for shard_name, pairs in by_shard.items():
            values = self._shard(shard_name).column(name, np.array([p for _, p in pairs], np.int64))
            for (i, _), value in zip(pairs, values, strict=True):
                out[i] = value
        return out

    def info(self, name: str) -> np.ndarray:
        """One per-video fact for every video, in `ids` order."""
        dtypes = self._index.layout.info_dtypes
        if dtypes.get(name, "str") == "str":
            known = sorted(n for n, d in dtypes.items() if d != "str")
            raise StoreError(f"{self.path} has no per-video {name!r}; it has {known}")
        return np.asarray(self._column(name), dtype=dtypes[name])

    def text(self, name: str) -> list[str]:
        """One per-video text (a transcript, a note) for every video, in `ids` order."""
        if self._index.layout.info_dtypes.get(name) != "str":
            known = sorted(n for n, d in self._index.layout.info_dtypes.items() if d == "str")
            raise StoreError(f"{self.path} has no per-video text {name!r}; it has {known}")
        return [str(value) for value in self._column(name)]

    def info_names(self) -> list[str]:
        return list(self._index.layout.info_dtypes)


# --- writing ----------------------------------------------------------------------------------


@dataclass
class BuildSummary:
    """What one build did: how many videos it computed, reused and lost, and why they failed."""

    path: Path
    computed: int = 0
    reused: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    unchanged: bool = False


_HELD: set[Path] = set()  # store folders this process is writing


class _Lock:
    """An exclusive lock on <store>/.lock for the run writing the store.

    A POSIX record lock (lockf): it belongs to this process alone, so forked workers do not hold it,
    and the kernel drops it when the process ends, however it ends. Another writer in this process
    is refused by `_HELD` (record locks do not exclude their own process). The file stays empty,
    so it never changes an output's hash, even where .dvcignore does not list it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder.resolve(), folder / LOCK
        busy = StoreError(
            f"{folder} is being written by another run ({self.path} is locked): wait for it to finish, or stop it"
        )
        if self.folder in _HELD:
            raise busy
        handle = open(self.path, "a+b")
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise busy from None
        _HELD.add(self.folder)
        self.release = weakref.finalize(self, _unlock, handle, self.folder)  # also when a builder is dropped


def _unlock(handle, folder: Path) -> None:
    fcntl.lockf(handle, fcntl.LOCK_UN)
    handle.close()
    _HELD.discard(folder)


class StoreBuilder:
    """Builds the store at `path` from rows reused from its shards plus newly computed rows.

    Reuse: a video's rows are taken from any readable shard in the folder (those the index lists,
    and those a killed run published before it could write the index) whose `config` equals this
    one's and that holds the video at the same source sha256. New rows go into a new shard, which is
    closed and published every `checkpoint_s` seconds or at REELFEAT_SHARD_MB, so a killed run
    loses at most that much work. `finish` writes the index (only if it changed) and removes shards
    no video needs any more.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: str,
        row_shape: tuple[int, ...],
        dtype: np.dtype | str,
        attrs: Mapping[str, str | int | float] | None = None,
        info_dtypes: Mapping[str, np.dtype | str] | None = None,
        checkpoint_s: float = 30.0,
        storage: str = "raw",
        jpeg_quality: int = 90,
        reuse: bool = True,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix == ".h5":
            raise StoreError(f"{self.path}: a store is a folder now; drop the .h5 from its path")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.path)
        for stale in self.path.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink()  # temp files of a killed run: never complete, never under a final name
        info = {
            name: ("str" if str(dtype) == "str" else np.dtype(dtype).str) for name, dtype in (info_dtypes or {}).items()
        }
        self.layout = Layout(tuple(row_shape), np.dtype(dtype).name, info, storage, jpeg_quality)
        self.config = config
        self._attrs = {**(attrs or {}), "config": config}
        self._checkpoint_s = checkpoint_s
        self._writer: _ShardWriter | None = None
        self._failures: dict[str, str] = {}
        self._computed = 0
        self._shards: dict[str, _Shard] = {}  # readable shards of this store: reused and new ones
        self._sources: dict[tuple[str, str], tuple[str, int]] = {}  # (id, sha) -> (shard, position)
        self._previous = self._read_previous()
        if reuse:
            listed = list(self._previous.shards) if self._previous else []
            for name in [*listed, *sorted(p.name for p in self.path.glob("shard-*.h5") if p.name not in listed)]:
                self._offer(name, expected_bytes=self._previous.shards[name]["bytes"] if name in listed else None)
        self.new_shards: list[str] = []

    def _read_previous(self) -> _Index | None:
        try:
            return _Index.load(self.path)
        except StoreError:
            return None  # no index yet, or a damaged one: shards are still checked one by one

    def _offer(self, name: str, expected_bytes: int | None) -> None:
        """Make a shard's videos reusable if it is whole and made the same way."""
        file = self.path / name
        if not file.is_file():
            print(f"warning: {file} is missing; its videos are computed again", file=sys.stderr)
            return
        size = file.stat().st_size
        if expected_bytes is not None and size != expected_bytes:
            print(
                f"warning: {file} is {size} bytes, not {expected_bytes}; its videos are computed again", file=sys.stderr
            )
            return
        if expected_bytes is None and not _named_by_content(file):
            print(f"warning: {file} does not match its name (damaged); its videos are computed again", file=sys.stderr)
            return
        try:
            shard = _Shard(file)
        except StoreError as exc:
            print(f"warning: {exc}; its videos are computed again", file=sys.stderr)
            return
        if shard.config != self.config or shard.layout != self.layout:
            return
        self._shards[name] = shard
        for position, key in enumerate(zip(shard.ids, shard.sha, strict=True)):
            self._sources.setdefault(key, (name, position))

    def reusable(self, vid: str, source_sha256: str) -> bool:
        return (vid, source_sha256) in self._sources

    def add(
        self,
        vid: str,
        source_sha256: str,
        feats: np.ndarray,
        timestamps: np.ndarray,
        info: Mapping[str, object] | None = None,
    ) -> None:
        if self._writer is None:
            self._writer = _ShardWriter(self.path, self.layout, self.config)
        self._writer.add(vid, feats, timestamps, source_sha256, info or {})
        self._computed += 1
        writer = self._writer
        if writer.bytes >= shard_bytes() or time.monotonic() - writer.started >= self._checkpoint_s:
            self.checkpoint()

    def add_failure(self, vid: str, error: str) -> None:
        self._failures[vid] = " ".join(str(error).split())

    def checkpoint(self) -> None:
        """Close the current shard under its final name; what it holds survives a kill."""
        if self._writer is None:
            return
        name = self._writer.close()
        self._writer = None
        self.new_shards.append(name)
        self._shards[name] = _Shard(self.path / name)
        for position, key in enumerate(zip(self._shards[name].ids, self._shards[name].sha, strict=True)):
            self._sources[key] = (name, position)  # just computed: newer than any earlier copy

    def abort(self) -> None:
        """Drop what this run wrote; the store stays as the last finished run left it."""
        self._writer = None  # its rows were never written
        listed = set(self._previous.shards) if self._previous else set()
        for name in self.new_shards:
            if name not in listed:
                (self.path / name).unlink(missing_ok=True)
        self._lock.release()

    def finish(self, rows: list[tuple[str, str]]) -> BuildSummary:
        """Index `rows` (id, source sha256), in that order, then drop shards no video needs."""
        self.checkpoint()
        summary = BuildSummary(self.path, computed=self._computed, failures=dict(self._failures))
        kept = [(vid, sha) for vid, sha in rows if vid not in self._failures]
        summary.reused = len(kept) - self._computed
        missing = [vid for vid, sha in kept if (vid, sha) not in self._sources]
        if missing:
            raise StoreError(f"{self.path}: no rows computed or reusable for {missing[:5]}")
        entries = [self._entry(vid, sha, *self._sources[(vid, sha)]) for vid, sha in kept]
        entries = self._compact(entries)
        used = {entry.shard for entry in entries}
        index = _Index(
            {**self._attrs, "manifest_sha256": rows_digest(rows)},
            self.layout,
            {name: self._facts(name) for name in sorted(used)},
            entries,
            dict(self._failures),
        )
        text = index.dumps()
        current = self.path / INDEX
        summary.unchanged = current.is_file() and current.read_text(encoding="utf-8") == text
        if not summary.unchanged:
            write_text(current, text)
        for file in self.path.glob("shard-*.h5"):
            if file.name not in used:
                file.unlink()
        self._lock.release()
        return summary

    def _entry(self, vid: str, sha: str, shard: str, position: int) -> _Entry:
        offsets = self._shards[shard].offsets
        return _Entry(vid, sha, shard, position, int(offsets[position + 1] - offsets[position]))

    def _facts(self, name: str) -> dict:
        shard = self._shards[name]
        return {"bytes": (self.path / name).stat().st_size, "videos": len(shard.ids), "rows": shard.num_rows}

    def _compact(self, entries: list[_Entry]) -> list[_Entry]:
        """Rewrite the live videos of shards whose dead share passed COMPACT_DEAD_SHARE into new shards."""
        live: dict[str, list[_Entry]] = {}
        for entry in entries:
            live.setdefault(entry.shard, []).append(entry)
        moving = []
        for name, kept in live.items():
            shard = self._shards[name]
            total = shard.num_rows or len(shard.ids)
            alive = sum(e.rows for e in kept) if shard.num_rows else len(kept)
            if 1 - alive / total > COMPACT_DEAD_SHARE:
                moving += kept
        if not moving:
            return entries
        moved: dict[str, _Entry] = {}
        writer = _ShardWriter(self.path, self.layout, self.config)
        for entry in sorted(moving, key=lambda e: (e.shard, e.position)):
            shard = self._shards[entry.shard]
            rows, times = shard.rows(entry.position), shard.timestamps(entry.position)
            writer.add(entry.vid, rows, times, entry.sha, shard.values(entry.position))
            if writer.bytes >= shard_bytes():
                moved.update(self._published(writer))
                writer = _ShardWriter(self.path, self.layout, self.config)
        moved.update(self._published(writer))
        return [moved.get(entry.vid, entry) for entry in entries]

    def _published(self, writer: _ShardWriter) -> dict[str, _Entry]:
        name = writer.close()
        self.new_shards.append(name)
        shard = self._shards[name] = _Shard(self.path / name)
        return {
            vid: self._entry(vid, sha, name, i) for i, (vid, sha) in enumerate(zip(shard.ids, shard.sha, strict=True))
        }


def _named_by_content(file: Path) -> bool:
    with open(file, "rb") as handle:
        return file.name == f"shard-{hashlib.file_digest(handle, 'sha256').hexdigest()[:32]}.h5"


class StoreWriter:
    """Writes a whole store in one go (imports, tests, benchmarks); `commit()` replaces whatever the
    folder held, `abort()` leaves it as it was. Stages use `StoreBuilder`, which also reuses rows."""

    def __init__(
        self,
        path: str | Path,
        *,
        row_shape: tuple[int, ...],
        dtype: np.dtype | str,
        attrs: Mapping[str, str | int | float],
        info_dtypes: Mapping[str, np.dtype | str] | None = None,
    ) -> None:
        attrs = dict(attrs)
        config = str(attrs.pop("config", ""))
        self._builder = StoreBuilder(
            path, config=config, row_shape=row_shape, dtype=dtype, attrs=attrs, info_dtypes=info_dtypes,
            checkpoint_s=float("inf"), reuse=False,
        )  # fmt: skip
        self._rows: list[tuple[str, str]] = []
        self.path = self._builder.path

    def add(
        self,
        vid: str,
        feats: np.ndarray,
        timestamps: np.ndarray,
        source_sha256: str = "",
        info: Mapping[str, object] | None = None,
    ) -> None:
        self._builder.add(vid, source_sha256, feats, timestamps, info)
        self._rows.append((vid, source_sha256))

    def add_failure(self, vid: str, error: str) -> None:
        self._builder.add_failure(vid, error)
        self._rows.append((vid, ""))

    def commit(self) -> Path:
        self._builder.finish(self._rows)
        return self.path

    def abort(self) -> None:
        self._builder.abort()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# --- reporting --------------------------------------------------------------------------------


def describe(path: str | Path) -> str:
    """A human summary of a store: counts, shards, bytes, provenance and failures."""
    reader = StoreReader(path)
    attrs = reader.attrs
    shards = reader.shards
    stored_rows = sum(facts["rows"] for facts in shards.values())
    size = sum(facts["bytes"] for facts in shards.values())
    layout = reader.layout
    lines = [
        f"{reader.path}",
        f"  videos: {len(reader)}   rows: {reader.num_rows}   row shape: {reader.row_shape}   dtype: {layout.dtype}"
        + (f"   stored as JPEG (quality {layout.jpeg_quality})" if layout.storage == "jpeg" else ""),
        f"  shards: {len(shards)}   bytes: {size:,}   bytes per video: {size // max(1, len(reader)):,}   "
        f"dead rows: {stored_rows - reader.num_rows}",
        f"  per-video info: {', '.join(reader.info_names()) or '-'}",
    ]
    shown = sorted(set(attrs) - {"recipe", "config"} if "recipe" in attrs else attrs)  # config: the recipe's contract
    for key in shown:
        value = attrs[key]
        if isinstance(value, str) and value.startswith("{"):
            value = json.dumps(json.loads(value), sort_keys=True)
        lines.append(f"  {key}: {value}")
    if "recipe" in attrs:
        recipe = json.dumps(json.loads(str(attrs["recipe"])), sort_keys=True, indent=2)
        lines.append("  recipe: " + recipe.replace("\n", "\n  "))
    failures = reader.failures
    lines.append(f"  failures: {len(failures)}")
    lines.extend(f"    {vid}: {error}" for vid, error in failures.items())
    return "\n".join(lines)


def print_summary(summaries: Mapping[str, BuildSummary], verb: str, file: TextIO | None = None) -> int:
    """Print what a stage did per store and every failure; returns the number of failed videos."""
    file = file or sys.stdout
    failed: dict[str, str] = {}
    for name, summary in summaries.items():
        state = "unchanged" if summary.unchanged else "written"
        print(
            f"{name}: {summary.path} {state}: {summary.computed} {verb}, {summary.reused} reused, "
            f"{len(summary.failures)} failed",
            file=file,
        )
        for vid, error in summary.failures.items():
            failed.setdefault(vid, f"{name}: {error}")
    if failed:
        print(f"{len(failed)} video(s) failed:", file=file)
        for vid, error in failed.items():
            print(f"  {vid}: {error}", file=file)
    return len(failed)
