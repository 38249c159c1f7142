"""The store: a folder of immutable shards and an index. Round trip, atomic writes, growth by new
shards only, nothing written when nothing changed, damaged shards recomputed, one writer at a time,
compaction, JPEG views, and a reader that opens few shards."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import ROOT

from extract.store import StoreBuilder, StoreError, StoreReader, StoreWriter, held_sources, store_info
from extract.store import reader as store_reader

INFO = {"duration": "f8", "has_audio": "?", "note": "str"}


def rows_for(vid: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    seed = sum(map(ord, vid))
    return np.full((n, 2, 3), seed % 251, np.uint8), np.arange(n, dtype=np.float32) / 2


def shard_ids(file) -> list[str]:
    with h5py.File(file) as raw:
        return list(raw["ids"].asstr()[:])


def open_files() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


def test_round_trip_keeps_rows_ids_info_text_and_failures(tmp_path):
    path = tmp_path / "s"
    with StoreWriter(path, row_shape=(2, 3), dtype=np.uint8, attrs={"config": "c"}, info_dtypes=INFO) as writer:
        for vid, n in [("a/x", 3), ("b/x", 0), ("c", 2)]:
            info = {"duration": n, "has_audio": n > 0, "note": f"{n} rows"}
            writer.add(vid, *rows_for(vid, n), source_sha256=f"sha-{vid}", info=info)
        writer.add_failure("bad", "ffprobe failed:\n moov atom not found")
    store = StoreReader(path)
    assert store.ids == ["a/x", "b/x", "c"] and "c" in store and "bad" not in store and len(store) == 3
    assert store.offsets.tolist() == [0, 3, 3, 5] and store.num_rows == 5
    feats, times = store.get("a/x")
    np.testing.assert_array_equal(feats, rows_for("a/x", 3)[0])
    np.testing.assert_array_equal(times, [0, 0.5, 1.0])
    assert store.get("b/x")[0].shape == (0, 2, 3)
    assert store.source_sha256 == ["sha-a/x", "sha-b/x", "sha-c"]
    assert store.info("has_audio").tolist() == [True, False, True]
    assert store.text("note") == ["3 rows", "0 rows", "2 rows"]
    assert store.failures == {"bad": "ffprobe failed: moov atom not found"}
    assert store.attrs["config"] == "c" and store.attrs["schema_version"] == 2 and store.row_shape == (2, 3)
    with pytest.raises(StoreError, match="it failed: ffprobe failed"):
        store.get("bad")
    (shard,) = path.glob("shard-*.h5")
    with h5py.File(shard) as raw:  # the documented layout, as outside tools see it
        assert set(raw) >= {"ids", "offsets", "feats", "timestamps", "source_sha256", "info", "text"}
        assert raw["feats"].shape == (5, 2, 3) and raw["timestamps"].dtype == np.float32
    index = json.loads((path / "index.json").read_text())
    assert index["videos"]["id"] == store.ids and index["failures"] == store.failures


def test_nothing_is_a_store_until_commit_and_an_error_leaves_the_old_one(tmp_path):
    path = tmp_path / "s"
    writer = StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={"version": "old"})
    writer.add("a", np.ones((2, 1), np.float32), np.zeros(2, np.float32))
    assert not (path / "index.json").exists()
    writer.commit()
    with pytest.raises(RuntimeError), StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={}) as writer:
        writer.add("b", np.ones((1, 1), np.float32), np.zeros(1, np.float32))
        raise RuntimeError("killed")
    store = StoreReader(path)
    assert store.ids == ["a"] and store.attrs["version"] == "old"
    assert sorted(p.name for p in path.iterdir() if p.name != ".lock") == sorted(["index.json", *store.shards])


def test_reader_says_what_is_wrong_with_a_path(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        StoreReader(tmp_path / "missing")
    (tmp_path / "old.h5").write_bytes(b"\x89HDF")
    with pytest.raises(StoreError, match="single-file store from before .* rebuild it as a folder"):
        StoreReader(tmp_path / "old.h5")
    path = tmp_path / "s"
    with StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={}):
        pass
    index = json.loads((path / "index.json").read_text())
    (path / "index.json").write_text(json.dumps({**index, "schema_version": 99}))
    with pytest.raises(StoreError, match="schema 99"):
        StoreReader(path)


def build(path, rows, config="c", fail=(), checkpoint_s=30.0, shard_bytes=64 << 20):
    """One builder pass: computes what is not reusable; returns (summary, computed ids)."""
    builder = StoreBuilder(
        path,
        config=config,
        row_shape=(2, 3),
        dtype=np.uint8,
        info_dtypes=INFO,
        checkpoint_s=checkpoint_s,
        shard_bytes=shard_bytes,
    )
    computed = []
    for vid, sha in rows:
        if vid in fail:
            builder.add_failure(vid, "broken")
        elif not builder.reusable(vid, sha):
            builder.add(vid, sha, *rows_for(vid + sha, 2), info={"duration": 1.0, "has_audio": True, "note": vid})
            computed.append(vid)
    return builder.finish(rows), computed


def snapshot(path) -> dict[str, tuple[bytes, int]]:
    """Every file of a store folder with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in path.iterdir() if p.name != ".lock"}


def test_builder_reuses_unchanged_videos_recomputes_changed_ones_and_writes_nothing_when_nothing_changed(tmp_path):
    path = tmp_path / "s"
    rows = [("a", "1"), ("b", "1"), ("c", "1")]
    summary, computed = build(path, rows)
    assert computed == ["a", "b", "c"] and not summary.unchanged
    before = snapshot(path)
    summary, computed = build(path, rows)
    assert computed == [] and summary.unchanged and summary.reused == 3
    assert snapshot(path) == before  # not a byte, not a timestamp
    summary, computed = build(path, [("a", "1"), ("b", "2"), ("c", "1"), ("d", "1")])
    assert computed == ["b", "d"] and summary.reused == 2
    store = StoreReader(path)
    assert store.ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(store.get("b")[0], rows_for("b2", 2)[0])
    old_shards = set(StoreReader(path).shards)
    _, computed = build(path, rows, config="other")
    assert computed == ["a", "b", "c"]  # another config reuses nothing
    (now,) = StoreReader(path).shards
    # the old config's shards outlive this run (readers opened before it), and are gone after the next
    assert {p.name for p in path.glob("shard-*.h5")} == old_shards | {now}
    build(path, rows, config="other")
    assert [p.name for p in path.glob("shard-*.h5")] == [now]


def test_growing_a_store_adds_shards_and_leaves_the_old_ones_byte_identical(tmp_path):
    path = tmp_path / "grown"
    first = [(f"v{i}", "1") for i in range(6)]
    build(path, first)
    old = {p.name: p.read_bytes() for p in path.glob("shard-*.h5")}
    build(path, [*first, ("v6", "1"), ("v7", "1")])
    now = {p.name: p.read_bytes() for p in path.glob("shard-*.h5")}
    assert {name: now[name] for name in old} == old and len(now) == len(old) + 1

    build(tmp_path / "fresh", [*first, ("v6", "1"), ("v7", "1")])  # the same videos in one go
    grown, fresh = StoreReader(path), StoreReader(tmp_path / "fresh")
    assert grown.ids == fresh.ids
    for vid in fresh.ids:
        for mine, theirs in zip(grown.get(vid), fresh.get(vid), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert grown.text("note") == fresh.text("note")


def test_failures_are_recorded_and_retried(tmp_path):
    path = tmp_path / "s"
    summary, _ = build(path, [("a", "1"), ("b", "1")], fail={"b"})
    assert summary.failures == {"b": "broken"} and StoreReader(path).failures == {"b": "broken"}
    assert StoreReader(path).ids == ["a"]
    _, computed = build(path, [("a", "1"), ("b", "1")])
    assert computed == ["b"] and StoreReader(path).failures == {}


def test_shards_of_a_run_that_never_finished_are_reused(tmp_path):
    path = tmp_path / "s"
    builder = StoreBuilder(path, config="c", row_shape=(2, 3), dtype=np.uint8, info_dtypes=INFO, checkpoint_s=0)
    for vid in ("a", "b"):
        builder.add(vid, "1", *rows_for(vid + "1", 2), info={"duration": 1.0, "has_audio": True, "note": vid})
    del builder  # the process died here: shards published, no index
    assert len(list(path.glob("shard-*.h5"))) == 2 and not (path / "index.json").exists()
    summary, computed = build(path, [("a", "1"), ("b", "1"), ("c", "1")])
    assert computed == ["c"] and summary.reused == 2
    assert StoreReader(path).ids == ["a", "b", "c"]


def test_held_sources_names_every_readable_shards_videos_whatever_made_them(tmp_path):
    """What `run` decodes before its recipe is known: any (id, sha) no shard holds cannot be reused."""
    path = tmp_path / "s"
    assert held_sources(path) == set()
    build(path, [("a", "1"), ("b", "1")], checkpoint_s=0)  # one shard per video
    build(path, [("a", "1"), ("b", "1"), ("c", "2")], config="other")
    assert held_sources(path) == {("a", "1"), ("b", "1"), ("c", "2")}
    name = next(n for n in StoreReader(path).shards if "c" in shard_ids(path / n))
    (path / name).write_bytes(b"not a shard")
    assert held_sources(path) == {("a", "1"), ("b", "1")}


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_shard_is_detected_and_its_videos_computed_again(tmp_path, damage):
    path = tmp_path / "s"
    build(path, [("a", "1"), ("b", "1")], checkpoint_s=0)  # one shard per video
    name = next(n for n in StoreReader(path).shards if "a" in shard_ids(path / n))
    if damage == "truncated":
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[: len(data) // 2])
    else:
        (path / name).unlink()
    with pytest.raises(StoreError, match=f"{name} is damaged"):
        StoreReader(path)  # a reader never serves a store with a hole in it
    summary, computed = build(path, [("a", "1"), ("b", "1")])
    assert computed == ["a"] and summary.reused == 1
    np.testing.assert_array_equal(StoreReader(path).get("a")[0], rows_for("a1", 2)[0])


def test_a_second_writer_is_refused_naming_the_lock(tmp_path):
    path = tmp_path / "s"
    busy = rf"{path} is being written by another run \({path / '.lock'} is locked\)"
    hold = (
        "import time; from extract.store import StoreBuilder; "
        f"held = StoreBuilder({str(path)!r}, config='c', row_shape=(1,), dtype='float32'); "
        "print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", hold], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=busy):
            StoreBuilder(path, config="c", row_shape=(1,), dtype=np.float32)
    finally:
        holder.kill()  # the lock dies with its process, however it ends
        holder.wait()
    first = StoreBuilder(path, config="c", row_shape=(1,), dtype=np.float32)
    with pytest.raises(StoreError, match=busy):  # a second writer in the same process
        StoreBuilder(path, config="c", row_shape=(1,), dtype=np.float32)
    first.finish([])
    StoreBuilder(path, config="c", row_shape=(1,), dtype=np.float32).finish([])  # free again


def test_a_shard_mostly_dead_is_compacted_and_one_all_dead_deleted(tmp_path, monkeypatch):
    path = tmp_path / "s"
    rows = [(f"v{i}", "1") for i in range(10)]
    build(path, rows)  # one shard of ten videos
    (original,) = StoreReader(path).shards
    build(path, rows[:6])  # 4 of 10 dead: kept as it is
    store = StoreReader(path)
    assert list(store.shards) == [original] and "dead rows: 8" in store_info(path)
    build(path, rows[:3])  # 7 of 10 dead: rewritten without them
    store = StoreReader(path)
    assert original not in store.shards and store.ids == ["v0", "v1", "v2"] and "dead rows: 0" in store_info(path)
    np.testing.assert_array_equal(store.get("v2")[0], rows_for("v21", 2)[0])
    assert store.text("note") == ["v0", "v1", "v2"]
    build(path, [("w", "1")])
    build(path, [("w", "1")])  # the shards that left the index the run before are deleted now
    assert len(StoreReader(path).shards) == 1 and len(list(path.glob("shard-*.h5"))) == 1


def test_shards_close_at_their_size_and_a_reader_touches_one_per_video_leaving_none_open(tmp_path, monkeypatch):
    path = tmp_path / "s"
    build(path, [(f"v{i}", "1") for i in range(10)], shard_bytes=2 * 12)  # two videos' rows (12 bytes each) per shard
    assert len(StoreReader(path).shards) == 5
    opened, real = [], store_reader.Shard
    monkeypatch.setattr(store_reader, "Shard", lambda file: opened.append(file) or real(file))
    gc.collect()  # files that earlier tests left to the collector close now, not during this count
    before = open_files(), len(os.listdir("/proc/self/fd"))
    store = StoreReader(path)
    store.get("v7")
    assert len(opened) == 1  # one video, one shard
    for vid in store.ids:
        np.testing.assert_array_equal(store.get(vid)[0], rows_for(vid + "1", 2)[0])
    assert len(opened) == 5 and (open_files(), len(os.listdir("/proc/self/fd"))) == before  # nothing left open


def test_frames_kept_as_jpeg_read_back_as_uint8_close_to_the_original(tmp_path):
    y, x = np.mgrid[0:32, 0:32]
    frame = np.stack([4 * x + 60, 4 * y + 40, 2 * (x + y) + 30], axis=-1)  # smooth colour ramps
    smooth = np.stack([[frame + 10 * t + k for k in range(2)] for t in range(3)]).astype(np.uint8)
    for storage in ("raw", "jpeg"):
        builder = StoreBuilder(
            tmp_path / storage, config="c", row_shape=(2, 32, 32, 3), dtype=np.uint8, storage=storage, jpeg_quality=90
        )
        builder.add("clip", "1", smooth, np.arange(3, dtype=np.float32))
        builder.finish([("clip", "1")])
    raw, jpeg = StoreReader(tmp_path / "raw"), StoreReader(tmp_path / "jpeg")
    decoded = jpeg.get("clip")[0]
    assert decoded.shape == smooth.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - smooth.astype(int)).mean() < 2
    np.testing.assert_array_equal(jpeg.read("clip", np.array([1])), decoded[1:2])
    size = {name: sum(f["bytes"] for f in reader.shards.values()) for name, reader in (("raw", raw), ("jpeg", jpeg))}
    assert size["jpeg"] < size["raw"]
    assert "stored as JPEG (quality 90)" in store_info(tmp_path / "jpeg")


def write_features(path, vids: list[str], config: str) -> None:
    with StoreWriter(path, row_shape=(4,), dtype=np.float32, attrs={"config": config}) as writer:
        for i, vid in enumerate(vids):
            writer.add(vid, np.full((i + 1, 4), i, np.float32), np.arange(i + 1, dtype=np.float32), f"sha-{vid}")


def test_a_reader_and_dataloader_workers_keep_reading_across_a_rebuild(tmp_path):
    """Readers opened before `dvc repro` rebuilds a store (notebooks, DataLoader workers) keep the store
    as they opened it; a second rebuild deletes what left the index, and the reader says to reopen."""
    import torch

    from heads.dataset import FeatureDataset

    path = tmp_path / "s"
    vids = [f"v{i}" for i in range(8)]
    write_features(path, vids, "one")
    expected = {vid: StoreReader(path).get(vid)[0] for vid in vids}
    reader, untouched = StoreReader(path), StoreReader(path)
    data = FeatureDataset({"x": path}, pool=None)
    batches = iter(torch.utils.data.DataLoader(data, batch_size=2, num_workers=2, collate_fn=data.collate))
    seen = [next(batches)]  # the workers are reading
    write_features(path, ["w"], "two")  # rebuilt: every old shard left the index
    seen += list(batches)
    got = {vid: b["x"][i][: int(b["x_mask"][i].sum())].numpy() for b in seen for i, vid in enumerate(b["ids"])}
    assert sorted(got) == sorted(expected)
    for vid, want in expected.items():
        np.testing.assert_array_equal(got[vid], want)
        np.testing.assert_array_equal(reader.get(vid)[0], want)
    assert StoreReader(path).ids == ["w"]

    write_features(path, ["w"], "two")  # the next rebuild deletes the shards that left
    with pytest.raises(StoreError, match="rebuilt twice since this reader opened it: open it again"):
        untouched.get("v3")
