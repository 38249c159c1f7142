"""A feature store as parquet shards with a Hugging Face dataset card, and back.

    <folder>/README.md                         the dataset card: configs, features, the recipe
    <folder>/data/train-00000-of-00002.parquet  id, rows, timestamps, and the manifest's columns

`rows` is a list of fixed-size lists (each row the store's width, in its float16 or float32), so
`datasets.load_dataset("parquet", data_dir=folder)` or `load_dataset(folder)` reads it as it is.
The store's attributes (recipe and reuse key included) travel in each file's schema metadata, so
`import_parquet` makes the same store again: the same ids, rows, timestamps and recipe. Ids coming
back in are held to the rule every writer keeps (`extract.core.files.id_problem`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from extract.core.errors import UserError
from extract.core.files import ID_RULE, atomic_path, id_problem, write_text
from extract.interop import Imported
from extract.stages.manifest import read_prepared
from extract.store import StoreReader, StoreWriter

SHARD_VIDEOS = 10_000  # videos per parquet file
# rows gathered before a row group is written: export's memory, whatever the store's size (bench/parquet.py:
# a 341 MB peak on a 552 MB store, the writer's buffers included, where files built whole took 5.5 GB)
ROW_GROUP_BYTES = 16 << 20
READ_VIDEOS = 8  # videos per record batch on import
META_KEY = b"reelfeat"
SKIPPED_COLUMNS = ("id", "video", "sha256")  # kept apart, or a path that means nothing elsewhere


def export_parquet(store: str | Path, out: str | Path, manifest: str | Path | None = None) -> int:
    """Write the store's videos as parquet shards and a dataset card under `out`; returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = StoreReader(store)
    if len(reader.row_shape) != 1:
        raise UserError(f"{store} holds rows of shape {reader.row_shape}, not features: export data/features/<name>")
    width = reader.row_shape[0]
    value = {np.dtype("float16"): pa.float16(), np.dtype("float32"): pa.float32()}.get(reader.dtype, pa.float32())
    table = {row["id"]: row for row in read_prepared(manifest)} if manifest else {}
    columns = [c for c in (next(iter(table.values()), {}) or {}) if c not in SKIPPED_COLUMNS]
    attrs = {k: v for k, v in reader.attrs.items() if k != "schema_version"}
    meta = {META_KEY: json.dumps({"attrs": attrs, "dtype": str(reader.dtype), "width": width}).encode()}
    schema = pa.schema(
        [("id", pa.string()), ("rows", pa.list_(pa.list_(value, width))), ("timestamps", pa.list_(pa.float32()))]
        + [("source_sha256", pa.string())]
        + [(c, pa.string()) for c in columns],
        metadata=meta,
    )
    ids, sha = reader.ids, dict(zip(reader.ids, reader.source_sha256, strict=True))
    shards = max(1, math.ceil(len(ids) / SHARD_VIDEOS))
    data = Path(out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.parquet"):
        old.unlink()
    # dictionaries and min/max statistics for the text columns only: on float rows they cost 3x the
    # writing time and save nothing
    text = [name for name in schema.names if name not in ("rows", "timestamps")]
    for shard in range(shards):
        chunk = ids[shard * SHARD_VIDEOS : (shard + 1) * SHARD_VIDEOS]
        with atomic_path(data / f"train-{shard:05d}-of-{shards:05d}.parquet") as path:
            with pq.ParquetWriter(path, schema, use_dictionary=text, write_statistics=text) as writer:
                for group in _row_groups(reader, chunk):
                    writer.write_table(_table(group, schema, width, sha, table, columns))
    write_text(Path(out) / "README.md", _card(reader, width, str(reader.dtype), columns, len(ids)))
    return len(ids)


def _row_groups(reader: StoreReader, ids: list[str]) -> Iterator[list[tuple[str, np.ndarray, np.ndarray]]]:
    """(id, rows, timestamps) of `ids` in groups of about ROW_GROUP_BYTES of rows: what is held at once."""
    group, size = [], 0
    for vid in ids:
        rows, stamps = reader.get(vid)
        group.append((vid, rows, stamps))
        size += rows.nbytes
        if size >= ROW_GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _table(group: list, schema, width: int, sha: dict, table: dict, columns: list[str]):
    """One row group: a parquet row per video, its rows a list of fixed-size lists."""
    import pyarrow as pa

    value = schema.field("rows").type.value_type.value_type
    counts = np.array([len(rows) for _, rows, _ in group], np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    flat = np.concatenate([rows.reshape(-1) for _, rows, _ in group])
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=value), width)
    stamps = np.concatenate([t.astype(np.float32) for _, _, t in group])
    ids = [vid for vid, _, _ in group]
    arrays = [
        pa.array(ids, pa.string()),
        pa.ListArray.from_arrays(offsets, fixed),
        pa.ListArray.from_arrays(offsets, pa.array(stamps, pa.float32())),
        pa.array([sha[vid] for vid in ids], pa.string()),
    ] + [pa.array([table.get(vid, {}).get(c, "") for vid in ids], pa.string()) for c in columns]
    return pa.Table.from_arrays(arrays, schema=schema)


def _card(reader: StoreReader, width: int, dtype: str, columns: list[str], videos: int) -> str:
    """The dataset card: YAML front matter (configs, features, the recipe), then what it holds."""
    import yaml

    recipe = json.loads(str(reader.attrs.get("recipe") or reader.attrs.get("config") or "{}"))
    weights = recipe.get("weights") or {}
    features = [
        {"name": "id", "dtype": "string"},
        {"name": "rows", "list": {"list": dtype, "length": width}},
        {"name": "timestamps", "list": "float32"},
        {"name": "source_sha256", "dtype": "string"},
    ] + [{"name": c, "dtype": "string"} for c in columns]
    front = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
        "dataset_info": {"features": features},
        "tags": ["reelfeat", "video-features"],
        "reelfeat": {"recipe": recipe},
    }
    name = weights.get("name") or "a local file"
    return (
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n"
        f"# {reader.path.name} features\n\n"
        f"{videos} videos from reelfeat store `{reader.path.name}`: each video's rows ({width}-d, {dtype}) "
        "and their times in seconds, with the manifest's columns where given.\n\n"
        f"Made by `{(recipe.get('backbone') or {}).get('model', '?')}` with weights {name} "
        f"(sha256 {weights.get('sha256', '?')}). The features derive from those weights: their licence "
        "is the weights' model card's.\n\n"
        '```python\nfrom datasets import load_dataset\nds = load_dataset("parquet", data_dir="THIS_FOLDER")\n```\n'
        "`reelfeat import-parquet THIS_FOLDER --out STORE` makes the store again.\n"
    )


def import_parquet(folder: str | Path, out: str | Path) -> Imported:
    """A store from `export_parquet`'s shards (same ids, rows, timestamps and recipe)."""
    folder = Path(folder)
    files = sorted((folder / "data").glob("*.parquet")) or sorted(folder.glob("*.parquet"))
    if not files:
        raise UserError(f"{folder}: no parquet files in it or in its data/ folder; export one with export-parquet")
    meta = _reelfeat_meta(files[0])
    width, dtype = meta["width"], np.dtype(meta["dtype"])
    count = 0
    with StoreWriter(out, row_shape=(width,), dtype=dtype, attrs=meta["attrs"]) as writer:
        for path in files:
            wide = _reelfeat_meta(path)["width"]
            if wide != width:
                raise UserError(
                    f"{path}: rows are {wide} wide, but {files[0].name}'s are {width}: one store holds one width; "
                    "remove the file or export it apart"
                )
            for batch in _batches(path, ["id", "rows", "timestamps", "source_sha256"]):
                ids = batch.column(0).to_pylist()
                rows, stamps, sha = batch.column(1), batch.column(2), batch.column(3).to_pylist()
                for i, vid in enumerate(ids):
                    if why := id_problem(vid or ""):
                        raise UserError(f"{path}: id {vid!r} {why}; {ID_RULE}")
                    video = rows[i].values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
                    seconds = stamps[i].values.to_numpy(zero_copy_only=False).astype(np.float32)
                    writer.add(vid, video.astype(dtype), seconds, sha[i] or "")
                    count += 1
    return Imported({Path(out).name: Path(out)}, count)


def _reelfeat_meta(path: Path) -> dict:
    """What export_parquet put in a file's schema (attrs, dtype, width), checked against the file's own
    `rows` column; any other file is refused by name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable parquet file ({exc}); remove it or export again") from None
    try:
        meta = json.loads(schema.metadata[META_KEY])
        meta["width"] = int(meta["width"])
        width = schema.field("rows").type.value_type.list_size
        if meta["dtype"] not in ("float16", "float32") or not isinstance(meta["attrs"], dict):
            raise ValueError(meta["dtype"])
    except (TypeError, KeyError, ValueError, AttributeError):
        raise UserError(
            f"{path}: not written by reelfeat export-parquet (no reelfeat metadata or rows column in its schema)"
        ) from None
    if width != meta["width"]:
        raise UserError(f"{path}: its rows are {width} wide, but its metadata says {meta['width']}; export again")
    return meta


def _batches(path: Path, columns: list[str]):
    """The file's record batches of `columns`; a damaged file is one error naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # pre_buffer (pyarrow's default) would hold the whole file's columns until the last batch is read
        shard = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        yield from shard.iter_batches(batch_size=READ_VIDEOS, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: damaged parquet file ({exc}); remove it or export again") from None
