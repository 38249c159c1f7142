"""One shard: written once and whole (`ShardWriter`), then read (`Shard`) without keeping it open.

Every read is verified. A shard carries an XXH3-64 hash of each row (`row_xxh3`; of each JPEG image
for JPEG storage), of each video's rows together (`video_xxh3`), of each video's timestamps
(`times_xxh3`) and of its ids, offsets, source hashes and per-video columns (attributes `meta_xxh3`
and each column's `xxh3`): rows are read straight from the file (no HDF5 on the way, hence no HDF5
filter), and each is checked against its hash before it is
returned. HDF5 1.10's own checksums cover the file's structure. A shard written before the checksums
is verified by its name instead, the sha256 of its bytes, when it is opened. A damaged shard is a
`DamagedShard` error naming the file and the fix, never rows."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
from xxhash import xxh3_64_intdigest

from extract.core.files import publish, temp_path
from extract.store.layout import SCHEMA_VERSION, Layout, StoreError

_STR = h5py.string_dtype("utf-8")
_BYTES = h5py.vlen_dtype(np.uint8)
_PLAIN = {"track_times": False}  # no wall-clock times in a file: the same rows give the same bytes
FIX = (
    "restore it with `dvc checkout` (or `dvc pull`) where DVC tracks the store; otherwise run "
    "`reelfeat verify --repair` on the store and rerun the stage that writes it, which recomputes only its videos"
)


class DamagedShard(StoreError):
    """A shard whose bytes are not what it was written with: its file, what is wrong, and the fix."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged ({reason}): {FIX}")
        self.path, self.reason = path, reason


def row_hashes(rows: np.ndarray | list) -> np.ndarray:
    """XXH3-64 of each row's bytes (or of each JPEG image), as uint64."""
    if isinstance(rows, np.ndarray) and rows.dtype != object and len(rows):  # one buffer, cut in rows
        flat = memoryview(np.ascontiguousarray(rows)).cast("B")
        size = len(flat) // len(rows)
        return np.array([xxh3_64_intdigest(flat[k : k + size]) for k in range(0, len(flat), size)], np.uint64)
    return np.array([xxh3_64_intdigest(np.ascontiguousarray(row)) for row in rows], np.uint64)


def values_hash(*columns: object) -> int:
    """XXH3-64 of small columns (ids, offsets, per-video values) by their JSON text."""
    plain = [column.tolist() if isinstance(column, np.ndarray) else list(column) for column in columns]
    return xxh3_64_intdigest(json.dumps(plain, sort_keys=True, default=str).encode())


class ShardWriter:
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
        self.row_hash: list[np.ndarray] = []
        self.video_hash: list[int] = []
        self.started = time.monotonic()

    def add(self, vid: str, feats: np.ndarray, timestamps: np.ndarray, sha: str, info: Mapping[str, object]) -> None:
        if len(feats) != len(timestamps):
            raise ValueError(f"{vid}: {len(feats)} rows but {len(timestamps)} timestamps")
        if self.layout.storage == "jpeg":
            images = encode_jpeg(np.asarray(feats).reshape(-1, *self.layout.row_shape[-3:]), self.layout)
            blobs = np.empty(len(images), dtype=object)  # filled one by one: equal lengths must not stack
            for k, image in enumerate(images):
                blobs[k] = image
            self.rows.append(blobs)
            self.row_hash.append(row_hashes(images))
            self.bytes += sum(len(image) for image in images)
        else:  # a copy: the caller may reuse its buffer before the shard is written
            rows = np.array(feats, self.layout.dtype).reshape(len(feats), *self.layout.row_shape)
            if rows.dtype.kind == "f" and not np.isfinite(rows).all():
                raise StoreError(f"{vid!r}: its rows hold NaN or Inf, which a store never keeps")
            self.rows.append(rows)
            self.row_hash.append(row_hashes(rows))
            self.video_hash.append(xxh3_64_intdigest(rows))
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
                h5.create_dataset("row_xxh3", data=np.concatenate([np.zeros(0, np.uint64), *self.row_hash]), **_PLAIN)
                h5.create_dataset("times_xxh3", data=row_hashes(self.times), **_PLAIN)
                if self.layout.storage != "jpeg":  # a whole video's rows in one check
                    h5.create_dataset("video_xxh3", data=np.asarray(self.video_hash, np.uint64), **_PLAIN)
                h5.attrs["meta_xxh3"] = values_hash(self.ids, self.offsets, self.sha)
                info, text = h5.create_group("info", track_order=True), h5.create_group("text", track_order=True)
                for name, dtype in self.layout.info_dtypes.items():
                    group, values = (
                        (text, np.asarray(self.info[name], dtype=object))
                        if dtype == "str"
                        else (
                            info,
                            np.asarray(self.info[name], dtype=dtype),
                        )
                    )
                    column = group.create_dataset(name, data=values, dtype=_STR if dtype == "str" else None, **_PLAIN)
                    column.attrs["xxh3"] = values_hash(values)
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


def encode_jpeg(frames: np.ndarray, layout: Layout) -> list[np.ndarray]:
    from PIL import Image  # Pillow, not torch: decoding processes stay free of torch

    images = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=layout.jpeg_quality)
        images.append(np.frombuffer(buffer.getvalue(), np.uint8))
    return images


def decode_jpeg(images: Iterable[np.ndarray]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(image.tobytes())).convert("RGB")) for image in images])


@dataclass(frozen=True)
class Extent:
    """Where a contiguous dataset's bytes start in its shard file, and what one of its rows is. Rows are
    read with `os.preadv` straight into the array that returns them: no HDF5 handle stays open."""

    offset: int | None  # None: nothing was allocated (no rows)
    dtype: np.dtype
    row_shape: tuple[int, ...]

    @classmethod
    def of(cls, dataset: h5py.Dataset) -> Extent:
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


class Shard:
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
                self.times = Extent.of(h5["timestamps"])
                self.data = None if "jpeg" in h5 else Extent.of(h5["feats"])
                rows = len(h5["timestamps"])
                stored = len(h5["jpeg"]) // self.layout.frames_per_row if "jpeg" in h5 else len(h5["feats"])
                # checksums: a shard written before them has none, and is checked by its name below
                self.checksummed = "row_xxh3" in h5
                if self.checksummed:
                    self.row_hash, self.times_hash = h5["row_xxh3"][:], h5["times_xxh3"][:]
                    meta_hash = int(h5.attrs["meta_xxh3"])
                    # a row is checked the first time this shard object reads it: a shard is never
                    # rewritten, so a head's later epochs read the bytes already checked
                    self._checked = np.zeros(len(self.row_hash), bool)
                    self.video_hash = h5["video_xxh3"][:] if "video_xxh3" in h5 else None
        except (OSError, KeyError, ValueError) as exc:
            raise DamagedShard(path, f"{type(exc).__name__}: {exc}") from None
        if len(self.offsets) != len(self.ids) + 1 or self.offsets[-1] != rows or stored != rows:
            raise DamagedShard(path, "its offsets and rows disagree")
        if self.checksummed and values_hash(self.ids, self.offsets, self.sha) != meta_hash:
            raise DamagedShard(path, "its ids, offsets or source hashes fail their checksum")
        if not self.checksummed and not named_by_content(path):
            raise DamagedShard(path, "its bytes no longer hash to its name")

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
            rows = self.data.read(self.path, [(int(run[0]), int(run[-1]) + 1) for run in runs])
            if select is None:
                self._check_videos(rows, [position])
            else:
                self._check(rows, wanted, f"rows of {self.ids[position]!r}")
            return rows
        per_row = self.layout.frames_per_row
        frames = (wanted[:, None] * per_row + np.arange(per_row)[None]).ravel()
        if not len(frames):
            return np.zeros((0, *self.layout.row_shape), np.uint8)
        with h5py.File(self.path, "r") as h5:
            images = h5["jpeg"][frames]
        self._check(images, frames, f"frames of {self.ids[position]!r}")
        return decode_jpeg(images).reshape(len(wanted), *self.layout.row_shape)

    def all_rows(self) -> np.ndarray:
        """Every row of the shard, dead ones included, in one read."""
        if self.data is not None:
            rows = self.data.read(self.path, [(0, self.num_rows)])
            self._check_videos(rows, range(len(self.ids)), start=0)
            return rows
        return np.concatenate([self.rows(i) for i in range(len(self.ids))]) if self.ids else self.rows(0)

    def verify(self) -> None:
        """Every checksum the shard carries, each row's and each video's, whatever was read before."""
        if self.checksummed:
            self._checked[:] = False
            if self.data is not None:
                rows = self.data.read(self.path, [(0, self.num_rows)])
                self._check(rows, np.arange(self.num_rows), "its rows")
                self._checked[:] = False
                self._check_videos(rows, range(len(self.ids)), start=0)
            else:
                for position in range(len(self.ids)):
                    self.rows(position)
        for position in range(len(self.ids)):
            self.timestamps(position)
        for column in self.layout.info_dtypes:
            self.column(column, np.zeros(0, np.int64))

    def timestamps(self, position: int) -> np.ndarray:
        times = self.times.read(self.path, [self._span(position)])
        self._check([times], np.array([position]), f"timestamps of {self.ids[position]!r}", self.times_hash)
        return times

    def _check_videos(self, rows: np.ndarray, positions, start: int | None = None) -> None:
        """Check whole videos' rows (`rows` holds the videos at `positions`, one after another, from
        shard row `start`, or the one video's own span): one hash a video."""
        if not self.checksummed or self.video_hash is None:  # per row where there is no per-video hash
            first = self._span(positions[0])[0] if start is None else start
            self._check(rows, np.arange(first, first + len(rows)), "its rows")
            return
        first = self._span(positions[0])[0] if start is None else start
        spans = [(position, *self._span(position)) for position in positions]
        todo = [(p, a, b) for p, a, b in spans if b > a and not self._checked[a:b].all()]
        if not todo:
            return
        for position, a, b in todo:
            if xxh3_64_intdigest(memoryview(rows[a - first : b - first]).cast("B")) != int(self.video_hash[position]):
                raise DamagedShard(self.path, f"rows of {self.ids[position]!r} fail their checksum")
            self._checked[a:b] = True

    def _check(self, rows, numbers: np.ndarray, what: str, hashes: np.ndarray | None = None) -> None:
        """Raise DamagedShard where a row read (rows[k] is row numbers[k]) fails its hash."""
        if not self.checksummed:
            return  # checked by its name when it was opened
        new = ~self._checked[numbers] if hashes is None else np.ones(len(numbers), bool)
        if not new.any():
            return
        expected = (self.row_hash if hashes is None else hashes)[numbers[new]]
        fresh = rows if new.all() else [row for row, unseen in zip(rows, new, strict=True) if unseen]
        if not np.array_equal(row_hashes(fresh), expected):
            raise DamagedShard(self.path, f"{what} fail their checksum")
        if hashes is None:
            self._checked[numbers[new]] = True

    def column(self, name: str, positions: np.ndarray) -> np.ndarray | list[str]:
        """Per-video fact or text `name` of the videos at `positions` (in that order)."""
        with h5py.File(self.path, "r") as h5:
            text = name in h5["text"]
            dataset = h5["text"][name] if text else h5["info"][name]
            values = dataset.asstr()[:] if text else dataset[:]  # one value a video: read whole, checked whole
            stored = dataset.attrs.get("xxh3")
        if stored is not None and values_hash(values) != int(stored):
            raise DamagedShard(self.path, f"its column {name!r} fails its checksum")
        if text:
            return [str(values[i]) for i in positions]
        return values[positions]

    def values(self, position: int) -> dict[str, object]:
        """Every per-video column of one video (for copying it into another shard)."""
        return {name: self.column(name, np.array([position]))[0] for name in self.layout.info_dtypes}


def named_by_content(file: Path) -> bool:
    with open(file, "rb") as handle:
        return file.name == f"shard-{hashlib.file_digest(handle, 'sha256').hexdigest()[:32]}.h5"
