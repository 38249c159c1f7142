"""Writing a store: `StoreBuilder` (incremental, for the stages), `StoreWriter` (in one go), one writer
at a time, and the summary a stage prints."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.core.files import TEMP_SUFFIX, write_text
from extract.core.settings import Settings
from extract.store.index import INDEX, Entry, Index
from extract.store.layout import Layout, StoreError
from extract.store.shard import Shard, ShardWriter, named_by_content

log = logging.getLogger(__name__)

LOCK = ".lock"
COMPACT_DEAD_SHARE = 0.5  # a shard is rewritten once more than this share of its rows is dead


def rows_digest(rows: Iterable[tuple[str, str]]) -> str:
    """sha256 of (id, source sha256) pairs: which videos, in which version, a store covers."""
    digest = hashlib.sha256()
    for vid, sha in rows:
        digest.update(f"{vid}\t{sha}\n".encode())
    return digest.hexdigest()


@dataclass
class BuildSummary:
    """What one build did: how many videos it computed, reused and lost, and why they failed."""

    path: Path
    computed: int = 0
    reused: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    unchanged: bool = False


HELD: set[Path] = set()  # store folders this process is writing


def held_sources(path: str | Path) -> set[tuple[str, str]]:
    """(id, source sha256) of every video a readable shard in the folder holds, whatever recipe made it:
    the most a builder there could reuse, known before the recipe is (`run` decodes the others at once)."""
    held: set[tuple[str, str]] = set()
    for file in Path(path).glob("shard-*.h5"):
        try:
            shard = Shard(file)
        except StoreError:
            continue  # the builder warns about it; its videos are computed again
        held.update(zip(shard.ids, shard.sha, strict=True))
    return held


class Lock:
    """An exclusive lock on <store>/.lock for the run writing the store.

    A POSIX record lock (lockf): it belongs to this process alone, so forked workers do not hold it,
    and the kernel drops it when the process ends, however it ends. Another writer in this process
    is refused by `HELD` (record locks do not exclude their own process). The file stays empty,
    so it never changes an output's hash, even where .dvcignore does not list it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder.resolve(), folder / LOCK
        busy = StoreError(
            f"{folder} is being written by another run ({self.path} is locked): wait for it to finish, or stop it"
        )
        if self.folder in HELD:
            raise busy
        handle = open(self.path, "a+b")
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise busy from None
        HELD.add(self.folder)
        self.release = weakref.finalize(self, unlock, handle, self.folder)  # also when a builder is dropped


def unlock(handle, folder: Path) -> None:
    fcntl.lockf(handle, fcntl.LOCK_UN)
    handle.close()
    HELD.discard(folder)


class StoreBuilder:
    """Builds the store at `path` from rows reused from its shards plus newly computed rows.

    Reuse: a video's rows are taken from any readable shard in the folder (those the index lists,
    and those a killed run published before it could write the index) whose `config` equals this
    one's and that holds the video at the same source sha256. New rows go into a new shard, which is
    closed and published every `checkpoint_s` seconds or at `shard_bytes`, so a killed run
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
        checkpoint_s: float = Settings.checkpoint_s,
        shard_bytes: int = Settings().shard_bytes,
        storage: str = "raw",
        jpeg_quality: int = 90,
        reuse: bool = True,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix == ".h5":
            raise StoreError(f"{self.path}: a store is a folder now; drop the .h5 from its path")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = Lock(self.path)
        for stale in self.path.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink()  # temp files of a killed run: never complete, never under a final name
        info = {
            name: ("str" if str(dtype) == "str" else np.dtype(dtype).str) for name, dtype in (info_dtypes or {}).items()
        }
        self.layout = Layout(tuple(row_shape), np.dtype(dtype).name, info, storage, jpeg_quality)
        self.config = config
        self._attrs = {**(attrs or {}), "config": config}
        self._checkpoint_s = checkpoint_s
        self._shard_bytes = shard_bytes
        self._writer: ShardWriter | None = None
        self._failures: dict[str, str] = {}
        self._computed = 0
        self._shards: dict[str, Shard] = {}  # readable shards of this store: reused and new ones
        self._sources: dict[tuple[str, str], tuple[str, int]] = {}  # (id, sha) -> (shard, position)
        self._previous = self._read_previous()
        if reuse:
            listed = list(self._previous.shards) if self._previous else []
            for name in [*listed, *sorted(p.name for p in self.path.glob("shard-*.h5") if p.name not in listed)]:
                self._offer(name, expected_bytes=self._previous.shards[name]["bytes"] if name in listed else None)
        self.new_shards: list[str] = []

    def _read_previous(self) -> Index | None:
        try:
            return Index.load(self.path)
        except StoreError:
            return None  # no index yet, or a damaged one: shards are still checked one by one

    def _offer(self, name: str, expected_bytes: int | None) -> None:
        """Make a shard's videos reusable if it is whole and made the same way."""
        file = self.path / name
        if not file.is_file():
            log.warning("%s is missing; its videos are computed again", file)
            return
        size = file.stat().st_size
        if expected_bytes is not None and size != expected_bytes:
            log.warning("%s is %d bytes, not %d; its videos are computed again", file, size, expected_bytes)
            return
        if expected_bytes is None and not named_by_content(file):
            log.warning("%s does not match its name (damaged); its videos are computed again", file)
            return
        try:
            shard = Shard(file)
        except StoreError as exc:
            log.warning("%s; its videos are computed again", exc)
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
            self._writer = ShardWriter(self.path, self.layout, self.config)
        self._writer.add(vid, feats, timestamps, source_sha256, info or {})
        self._computed += 1
        writer = self._writer
        if writer.bytes >= self._shard_bytes or time.monotonic() - writer.started >= self._checkpoint_s:
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
        self._shards[name] = Shard(self.path / name)
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

    def previous_attrs(self, names: tuple[str, ...]) -> dict[str, str | int | float]:
        """Those of `names` that the store's last finished build recorded."""
        attrs = self._previous.attrs if self._previous else {}
        return {name: attrs[name] for name in names if name in attrs}

    def set_attr(self, name: str, value: str | int | float) -> None:
        """An attribute known only once the work is done (provenance: never part of the reuse key)."""
        if name == "config":
            raise ValueError("the config attribute is the reuse key, fixed when the builder is made")
        self._attrs[name] = value

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
        index = Index(
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
        # A shard that leaves the index now is deleted by the next run, not this one: a reader opened
        # before this rebuild (a notebook, DataLoader workers) still finds every row it was shown.
        left_now = set(self._previous.shards) if self._previous else set()
        for file in self.path.glob("shard-*.h5"):
            if file.name not in used and file.name not in left_now:
                file.unlink()
        self._lock.release()
        return summary

    def _entry(self, vid: str, sha: str, shard: str, position: int) -> Entry:
        offsets = self._shards[shard].offsets
        return Entry(vid, sha, shard, position, int(offsets[position + 1] - offsets[position]))

    def _facts(self, name: str) -> dict:
        shard = self._shards[name]
        return {"bytes": (self.path / name).stat().st_size, "videos": len(shard.ids), "rows": shard.num_rows}

    def _compact(self, entries: list[Entry]) -> list[Entry]:
        """Rewrite the live videos of shards whose dead share passed COMPACT_DEAD_SHARE into new shards."""
        live: dict[str, list[Entry]] = {}
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
        moved: dict[str, Entry] = {}
        writer = ShardWriter(self.path, self.layout, self.config)
        for entry in sorted(moving, key=lambda e: (e.shard, e.position)):
            shard = self._shards[entry.shard]
            rows, times = shard.rows(entry.position), shard.timestamps(entry.position)
            writer.add(entry.vid, rows, times, entry.sha, shard.values(entry.position))
            if writer.bytes >= self._shard_bytes:
                moved.update(self._published(writer))
                writer = ShardWriter(self.path, self.layout, self.config)
        moved.update(self._published(writer))
        return [moved.get(entry.vid, entry) for entry in entries]

    def _published(self, writer: ShardWriter) -> dict[str, Entry]:
        name = writer.close()
        self.new_shards.append(name)
        shard = self._shards[name] = Shard(self.path / name)
        return {
            vid: self._entry(vid, sha, name, i) for i, (vid, sha) in enumerate(zip(shard.ids, shard.sha, strict=True))
        }


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


def summary_lines(summaries: Mapping[str, BuildSummary], verb: str) -> tuple[list[str], int]:
    """(what a stage did per store and every failure, as lines; the number of failed videos)."""
    lines, failed = [], {}
    for name, summary in summaries.items():
        state = "unchanged" if summary.unchanged else "written"
        lines.append(
            f"{name}: {summary.path} {state}: {summary.computed} {verb}, {summary.reused} reused, "
            f"{len(summary.failures)} failed"
        )
        for vid, error in summary.failures.items():
            failed.setdefault(vid, f"{name}: {error}")
    if failed:
        lines.append(f"{len(failed)} video(s) failed:")
        lines += [f"  {vid}: {error}" for vid, error in failed.items()]
    return lines, len(failed)
