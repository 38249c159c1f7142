"""HDF5 stores of per-video rows: the only module that knows the layout.

    /ids            (n,)     utf-8 video ids, in manifest order
    /offsets        (n+1,)   int64; rows of video i are feats[offsets[i]:offsets[i+1]]
    /feats          (T, ...) all videos' rows concatenated (frames, clips, samples or features)
    /timestamps     (T,)     float32 seconds of each row
    /source_sha256  (n,)     content hash of each source video
    /info/<name>    (n,)     optional per-video facts (duration, has_audio, ...)
    /text/<name>    (n,)     optional per-video text (transcripts, segments as JSON, notes)
    /failures/ids, /failures/errors   videos that failed, one-line reason each
    attrs: schema_version, config (the reuse key), manifest_sha256, plus provenance

Writes go to a temp file in the same folder and are renamed into place (`extract.atomic`), so a
final name never holds a half-written store. `StoreBuilder` adds incremental reuse and checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import h5py
import numpy as np

from extract.atomic import TEMP_SUFFIX, publish, stale_temps, temp_path
from extract.errors import UserError

SCHEMA_VERSION = 1
_STR = h5py.string_dtype("utf-8")
_CHUNK_BYTES = 1 << 20


def checkpoint_seconds() -> float:
    """How often finished videos are saved for a killed run to resume from: REELFEAT_CHECKPOINT_S."""
    return float(os.environ.get("REELFEAT_CHECKPOINT_S", 30))


class StoreError(UserError):
    """A store that is missing, of another schema, or asked for a video it does not hold."""


def rows_digest(rows: Iterable[tuple[str, str]]) -> str:
    """sha256 of (id, source sha256) pairs: which videos, in which version, a store covers."""
    digest = hashlib.sha256()
    for vid, sha in rows:
        digest.update(f"{vid}\t{sha}\n".encode())
    return digest.hexdigest()


class StoreWriter:
    """Appends videos' rows to a new store; `commit()` renames it into place, `abort()` drops it."""

    def __init__(
        self,
        path: str | Path,
        *,
        row_shape: tuple[int, ...],
        dtype: np.dtype | str,
        attrs: Mapping[str, str | int | float],
        info_dtypes: Mapping[str, np.dtype | str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path(self.path)
        self._h5 = h5py.File(self._tmp, "w", libver="v110")
        row_bytes = max(1, int(np.prod(row_shape)) * np.dtype(dtype).itemsize)
        chunk_rows = max(1, _CHUNK_BYTES // row_bytes)
        self._feats = self._h5.create_dataset(
            "feats",
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=(chunk_rows, *row_shape),
            track_times=False,
        )
        self._times = self._h5.create_dataset(
            "timestamps",
            shape=(0,),
            maxshape=(None,),
            dtype=np.float32,
            chunks=(max(1024, chunk_rows),),
            track_times=False,
        )
        self._attrs = dict(attrs)
        self._info_dtypes = dict(info_dtypes or {})
        self._ids: list[str] = []
        self._offsets = [0]
        self._sha: list[str] = []
        self._info: dict[str, list] = {name: [] for name in self._info_dtypes}
        self._failures: dict[str, str] = {}

    def add(
        self,
        vid: str,
        feats: np.ndarray,
        timestamps: np.ndarray,
        source_sha256: str = "",
        info: Mapping[str, object] | None = None,
    ) -> None:
        if len(feats) != len(timestamps):
            raise ValueError(f"{vid}: {len(feats)} rows but {len(timestamps)} timestamps")
        start, end = self._offsets[-1], self._offsets[-1] + len(feats)
        if end > start:
            self._feats.resize(end, axis=0)
            self._feats[start:end] = feats
            self._times.resize(end, axis=0)
            self._times[start:end] = timestamps
        self._ids.append(vid)
        self._offsets.append(end)
        self._sha.append(source_sha256)
        for name in self._info_dtypes:
            self._info[name].append((info or {})[name])

    def add_failure(self, vid: str, error: str) -> None:
        self._failures[vid] = " ".join(str(error).split())  # one line, whatever the message

    def commit(self) -> Path:
        h5 = self._h5
        h5.create_dataset("ids", data=np.asarray(self._ids, dtype=object), dtype=_STR, track_times=False)
        h5.create_dataset("offsets", data=np.asarray(self._offsets, np.int64), track_times=False)
        h5.create_dataset("source_sha256", data=np.asarray(self._sha, dtype=object), dtype=_STR, track_times=False)
        info = h5.create_group("info", track_order=True)
        text = h5.create_group("text", track_order=True)
        for name, dtype in self._info_dtypes.items():
            if dtype == "str":
                text.create_dataset(name, data=np.asarray(self._info[name], dtype=object), dtype=_STR)
            else:
                info.create_dataset(name, data=np.asarray(self._info[name], dtype=dtype), track_times=False)
        failures = h5.create_group("failures")
        failures.create_dataset("ids", data=np.asarray(list(self._failures), dtype=object), dtype=_STR)
        failures.create_dataset("errors", data=np.asarray(list(self._failures.values()), dtype=object), dtype=_STR)
        h5.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in sorted(self._attrs.items()):
            h5.attrs[key] = value
        h5.close()
        return publish(self._tmp, self.path)

    def abort(self) -> None:
        if self._h5.id.valid:
            self._h5.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class StoreReader:
    """Reads a store. The HDF5 file is opened on first use and once per process (safe after fork)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no store at {self.path}: run the stage that writes it (dvc repro)")
        self._h5: h5py.File | None = None
        self._pid = -1
        self._index: dict[str, int] | None = None
        if int(self.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema {self.attrs.get('schema_version')}, this reelfeat reads "
                f"{SCHEMA_VERSION}: delete it and rerun the stage that writes it"
            )

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    @property
    def attrs(self) -> dict[str, object]:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self.h5.attrs.items()}

    @property
    def recipe(self) -> dict:
        """How the rows were made (see `extract.recipe`): a feature store's recipe, a decoded store's view."""
        attrs = self.attrs
        return json.loads(str(attrs.get("recipe") or attrs.get("config") or "{}"))

    @property
    def ids(self) -> list[str]:
        return list(self.index)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {vid: i for i, vid in enumerate(self.h5["ids"].asstr()[:])}
        return self._index

    @property
    def offsets(self) -> np.ndarray:
        return self.h5["offsets"][:]

    @property
    def source_sha256(self) -> list[str]:
        return list(self.h5["source_sha256"].asstr()[:])

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.h5["feats"].shape[1:])

    @property
    def num_rows(self) -> int:
        return int(self.h5["feats"].shape[0])

    @property
    def failures(self) -> dict[str, str]:
        group = self.h5["failures"]
        return dict(zip(group["ids"].asstr()[:], group["errors"].asstr()[:], strict=True))

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, vid: object) -> bool:
        return vid in self.index

    def rows_of(self, i: int) -> slice:
        start, end = self.h5["offsets"][i : i + 2]
        return slice(int(start), int(end))

    def get(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, timestamps) of one video."""
        if vid not in self.index:
            why = self.failures.get(vid)
            raise StoreError(f"{self.path}: no rows for {vid!r}" + (f" (it failed: {why})" if why else ""))
        rows = self.rows_of(self.index[vid])
        return self.h5["feats"][rows], self.h5["timestamps"][rows]

    def info(self, name: str) -> np.ndarray:
        """One per-video fact for every video, in `ids` order."""
        if name not in self.h5["info"]:
            raise StoreError(f"{self.path} has no per-video {name!r}; it has {sorted(self.h5['info'])}")
        return self.h5["info"][name][:]

    def text(self, name: str) -> list[str]:
        """One per-video text (a transcript, a note) for every video, in `ids` order."""
        if name not in self.h5["text"]:
            raise StoreError(f"{self.path} has no per-video text {name!r}; it has {sorted(self.h5['text'])}")
        return list(self.h5["text"][name].asstr()[:])

    def info_names(self) -> list[str]:
        return list(self.h5["info"]) + list(self.h5["text"])

    def column_of(self, name: str, i: int) -> object:
        """Per-video fact or text `name` of the i-th video."""
        if name in self.h5["text"]:
            return self.h5["text"][name].asstr()[i]
        return self.h5["info"][name][i]

    def read_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feats, timestamps, offsets) of the whole store in memory, for fast training."""
        return self.h5["feats"][:], self.h5["timestamps"][:], self.offsets


@dataclass
class BuildSummary:
    """What one build did: how many videos it computed, reused and lost, and why they failed."""

    path: Path
    computed: int = 0
    reused: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    unchanged: bool = False


class StoreBuilder:
    """Builds the store at `path` from rows reused from earlier runs plus newly computed rows.

    Reuse: rows of a video are taken from the previous store (or from checkpoints of a killed
    run) when its id and source sha256 match and the store's `config` equals this one's.
    Checkpoints: new rows go to part files in `.<name>.parts/`, each closed and renamed into
    place every `checkpoint_s` seconds, so a killed run loses at most that much work.
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
    ) -> None:
        self.path = Path(path)
        self.parts_dir = self.path.with_name(f".{self.path.name}.parts")
        self._layout = {"row_shape": tuple(row_shape), "dtype": dtype, "info_dtypes": dict(info_dtypes or {})}
        self._attrs = {**(attrs or {}), "config": config}
        self._checkpoint_s = checkpoint_s
        self._part: StoreWriter | None = None
        self._part_started = 0.0
        self._failures: dict[str, str] = {}
        self._computed = 0
        for stale in [*stale_temps(self.path), *self.parts_dir.glob(f".*{TEMP_SUFFIX}")]:
            stale.unlink()  # temp files of a killed run: never complete, never under a final name
        self._sources: dict[tuple[str, str], tuple[StoreReader, int]] = {}
        self._previous: StoreReader | None = None
        parts = sorted(self.parts_dir.glob("part-*.h5"))
        for candidate in [self.path, *parts]:
            reader = self._open_matching(candidate, config)
            if reader is None:
                continue
            if candidate == self.path:
                self._previous = reader
            for i, (vid, sha) in enumerate(zip(reader.ids, reader.source_sha256, strict=True)):
                self._sources[(vid, sha)] = (reader, i)
        self._next_part = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0

    @staticmethod
    def _open_matching(path: Path, config: str) -> StoreReader | None:
        if not path.is_file():
            return None
        try:
            reader = StoreReader(path)
            return reader if reader.attrs.get("config") == config else None
        except (StoreError, OSError, KeyError):
            return None  # unreadable or of another schema: recompute rather than trust it

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
        if self._part is None:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            self._part = StoreWriter(
                self.parts_dir / f"part-{self._next_part:05d}.h5", attrs=self._attrs, **self._layout
            )
            self._part_started = time.monotonic()
        self._part.add(vid, feats, timestamps, source_sha256, info)
        self._computed += 1
        if time.monotonic() - self._part_started >= self._checkpoint_s:
            self.checkpoint()

    def add_failure(self, vid: str, error: str) -> None:
        self._failures[vid] = " ".join(str(error).split())

    def checkpoint(self) -> None:
        """Close the current part file under its final name; what it holds survives a kill."""
        if self._part is None:
            return
        part_path = self._part.commit()
        self._part = None
        self._next_part += 1
        reader = StoreReader(part_path)
        for i, (vid, sha) in enumerate(zip(reader.ids, reader.source_sha256, strict=True)):
            self._sources[(vid, sha)] = (reader, i)

    def finish(self, rows: list[tuple[str, str]]) -> BuildSummary:
        """Write the final store holding `rows` (id, source sha256) in that order, then drop the parts."""
        self.checkpoint()
        attrs = {**self._attrs, "manifest_sha256": rows_digest(rows)}
        summary = BuildSummary(self.path, computed=self._computed, failures=dict(self._failures))
        kept = [(vid, sha) for vid, sha in rows if vid not in self._failures]
        summary.reused = len(kept) - self._computed
        missing = [vid for vid, sha in kept if (vid, sha) not in self._sources]
        if missing:
            raise StoreError(f"{self.path}: no rows computed or reusable for {missing[:5]}")
        if self._unchanged(kept, attrs):
            summary.unchanged = True
        else:
            with StoreWriter(self.path, attrs=attrs, **self._layout) as writer:
                for vid, sha in kept:
                    reader, i = self._sources[(vid, sha)]
                    rows_slice = reader.rows_of(i)
                    info = {name: reader.column_of(name, i) for name in self._layout["info_dtypes"]}
                    writer.add(vid, reader.h5["feats"][rows_slice], reader.h5["timestamps"][rows_slice], sha, info)
                for vid, error in self._failures.items():
                    writer.add_failure(vid, error)
        for reader, _ in self._sources.values():
            reader.close()
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return summary

    def _unchanged(self, kept: list[tuple[str, str]], attrs: Mapping[str, object]) -> bool:
        """True when the previous store already is exactly what this build would write."""
        prev = self._previous
        if prev is None or self._computed or self._failures != prev.failures:
            return False
        same_attrs = all(prev.attrs.get(k) == v for k, v in attrs.items())
        return same_attrs and list(zip(prev.ids, prev.source_sha256, strict=True)) == kept


def describe(path: str | Path) -> str:
    """A human summary of a store: provenance, counts, shapes and failures."""
    reader = StoreReader(path)
    attrs = reader.attrs
    lines = [f"{reader.path}", f"  videos: {len(reader)}   rows: {reader.num_rows}   row shape: {reader.row_shape}"]
    lines.append(f"  dtype: {reader.h5['feats'].dtype}   per-video info: {', '.join(reader.info_names()) or '-'}")
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
