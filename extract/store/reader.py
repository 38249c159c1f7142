"""Reading a store folder: `StoreReader`, and `store_info` for people."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from extract.core.recipe import Recipe
from extract.store.index import Entry, Index
from extract.store.layout import SCHEMA_VERSION, Layout, StoreError
from extract.store.shard import Shard


class StoreReader:
    """Reads a store folder. A shard's ids and offsets are read the first time one of its videos is;
    rows are then read with one `preadv` each, so no file stays open and reading one video's rows
    touches one shard. The index is read once: a reader keeps showing the store as it was when it
    was opened, across one rebuild (a rebuild deletes the shards that left the index the run before)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            Index.load(self.path)  # raises the error that says what is there instead
        self._index = Index.load(self.path)
        self._position = {entry.vid: i for i, entry in enumerate(self._index.entries)}
        self._shards: dict[str, Shard] = {}
        for name, facts in self._index.shards.items():
            file = self.path / name
            if not file.is_file() or file.stat().st_size != facts["bytes"]:
                what = "missing" if not file.is_file() else f"{file.stat().st_size} bytes, not {facts['bytes']}"
                raise StoreError(f"{file} is damaged ({what}): rerun the stage that writes {self.path} (dvc repro)")
        self.rows_read = 0  # rows read through `get`, `read` and `iter_rows`: how much of the store a caller touched

    def _shard(self, name: str) -> Shard:
        if name not in self._shards:
            if not (self.path / name).is_file():  # rebuilt twice: the shard left the index a run ago
                raise StoreError(f"{self.path} was rebuilt twice since this reader opened it: open it again")
            self._shards[name] = Shard(self.path / name)
        return self._shards[name]

    @property
    def attrs(self) -> dict[str, object]:
        return {**self._index.attrs, "schema_version": SCHEMA_VERSION}

    @property
    def recipe(self) -> Recipe:
        """How the rows were made (see `extract.core.recipe`): a feature store's backbone, weights and input,
        a decoded store's view."""
        attrs = self._index.attrs
        return Recipe.of(json.loads(str(attrs.get("recipe") or attrs.get("config") or "{}")))

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

    def _entry(self, vid: str) -> Entry:
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

    def timestamps(self, vid: str) -> np.ndarray:
        """Seconds of each row of one video, without reading its rows."""
        entry = self._entry(vid)
        return self._shard(entry.shard).timestamps(entry.position)

    def read(self, vid: str, select: np.ndarray | None = None) -> np.ndarray:
        """Rows of one video in the store's dtype; `select` (sorted row numbers) reads only those rows."""
        entry = self._entry(vid)
        self.rows_read += entry.rows if select is None else len(select)
        return self._shard(entry.shard).rows(entry.position, select)

    def iter_rows(self) -> Iterator[tuple[str, np.ndarray]]:
        """(id, rows) of every video, a shard at a time (each shard read in one go), in no fixed order."""
        by_shard: dict[str, list[Entry]] = {}
        for entry in self._index.entries:
            by_shard.setdefault(entry.shard, []).append(entry)
        for name, entries in sorted(by_shard.items()):
            shard = self._shard(name)
            block = shard.all_rows()
            for entry in entries:
                self.rows_read += entry.rows
                yield entry.vid, block[shard.offsets[entry.position] : shard.offsets[entry.position + 1]]

    def pooled(self, reduce=np.mean) -> np.ndarray:
        """(videos, D) float32: each video's rows reduced to one (`np.mean`, `np.max`), in `ids` order;
        a video without rows gets zeros. Feature stores only (rows of one dimension)."""
        position = self._position
        pooled = np.zeros((len(position), *self.row_shape), np.float32)
        for vid, rows in self.iter_rows():
            if len(rows):
                pooled[position[vid]] = reduce(rows.astype(np.float32), axis=0)
        return pooled

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


def _verified(reader: StoreReader) -> str:
    checked = sum(reader._shard(name).checksummed for name in reader.shards)
    if checked == len(reader.shards):
        return "every row against its checksum"
    return f"{checked} of {len(reader.shards)} shards by checksums, the others by their hash when opened"


def store_info(path: str | Path) -> str:
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
        f"  verified on read: {_verified(reader)}",
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
