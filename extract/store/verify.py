"""Checking a store's every byte (`verify`), and dropping its damaged shards (`repair`), so that the next
run of the stage that writes it recomputes their videos and reuses the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extract.core.files import write_text
from extract.store.builder import Lock
from extract.store.index import INDEX, Index
from extract.store.layout import StoreError
from extract.store.shard import Shard, named_by_content


@dataclass(frozen=True)
class Damage:
    shard: str  # its file name in the store
    reason: str
    videos: tuple[str, ...]  # the live videos the index places in it


@dataclass(frozen=True)
class Verified:
    store: Path
    shards: int
    checksummed: int  # shards that carry checksums (the others were written before them)
    damaged: tuple[Damage, ...]


def verify(store: str | Path) -> Verified:
    """Every shard the index lists against its size and the sha256 its name carries, then every row,
    timestamp and column against its checksum. A damaged index is a StoreError."""
    store = Path(store)
    index = Index.load(store)
    videos: dict[str, list[str]] = {}
    for entry in index.entries:
        videos.setdefault(entry.shard, []).append(entry.vid)
    damaged, checksummed = [], 0
    for name, facts in sorted(index.shards.items()):
        file = store / name
        if not file.is_file():
            reason = "missing"
        elif file.stat().st_size != facts["bytes"]:
            reason = f"{file.stat().st_size} bytes, not {facts['bytes']}"
        elif not named_by_content(file):
            reason = "its bytes no longer hash to its name"
        else:
            reason = ""
            try:
                shard = Shard(file)
                checksummed += shard.checksummed
                shard.verify()
            except StoreError as exc:  # a DamagedShard says what; another refusal (a schema) says it all
                reason = getattr(exc, "reason", str(exc))
        if reason:
            damaged.append(Damage(name, reason, tuple(videos.get(name, ()))))
    return Verified(store, len(index.shards), checksummed, tuple(damaged))


def repair(found: Verified) -> int:
    """Drop the damaged shards from the store's index and delete them; returns the videos dropped.
    The next run of the stage that writes the store computes those videos again and reuses the rest."""
    if not found.damaged:
        return 0
    lock = Lock(found.store)  # no run may write the store meanwhile
    try:
        index = Index.load(found.store)
        gone = {damage.shard for damage in found.damaged}
        kept = [entry for entry in index.entries if entry.shard not in gone]
        repaired = Index(
            index.attrs, index.layout, {n: f for n, f in index.shards.items() if n not in gone}, kept, index.failures
        )
        write_text(found.store / INDEX, repaired.dumps())
        for name in gone:
            (found.store / name).unlink(missing_ok=True)
    finally:
        lock.release()
    return len(index.entries) - len(kept)
