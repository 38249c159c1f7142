"""Stores of per-video rows: a folder of immutable HDF5 shards plus an index. The only package that
knows the layout: `layout.py` (schema, errors, row layout), `shard.py` (one shard written and read),
`index.py`, `reader.py` (`StoreReader`) and `builder.py` (`StoreBuilder`, `StoreWriter`).

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
    <store>/.lock               locked by the run writing the store; empty, and .dvcignore keeps it out of DVC

A run that adds videos writes new shards and a new index and never rewrites a shard of unchanged
videos, so DVC (which hashes a folder output file by file) caches and pushes only the new shards.
A video that changed or left the manifest leaves the index; a shard is rewritten without its dead
rows once more than half of them are dead, and deleted once none is live. A run with nothing to
change writes nothing. A shard that is missing, truncated or unreadable is detected (its size is
in the index), and a builder computes its videos again.
"""

from extract.store.builder import BuildSummary, StoreBuilder, StoreWriter, held_sources, rows_digest, summary_lines
from extract.store.index import digest
from extract.store.layout import SCHEMA_VERSION, STORAGES, Layout, StoreError
from extract.store.reader import StoreReader, store_info
from extract.store.verify import Damage, Verified, repair, verify

__all__ = [
    "Damage",
    "Verified",
    "SCHEMA_VERSION",
    "STORAGES",
    "BuildSummary",
    "Layout",
    "StoreBuilder",
    "StoreError",
    "StoreReader",
    "StoreWriter",
    "store_info",
    "digest",
    "held_sources",
    "repair",
    "rows_digest",
    "summary_lines",
    "verify",
]
