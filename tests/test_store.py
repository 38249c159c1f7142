"""The HDF5 store: layout round trip, atomic writes, incremental reuse and checkpoints."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from extract.store import StoreBuilder, StoreError, StoreReader, StoreWriter

INFO = {"duration": "f8", "has_audio": "?"}


def rows_for(vid: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    seed = sum(map(ord, vid))
    return np.full((n, 2, 3), seed % 251, np.uint8), np.arange(n, dtype=np.float32) / 2


def test_round_trip_keeps_rows_ids_info_and_failures(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, row_shape=(2, 3), dtype=np.uint8, attrs={"config": "c"}, info_dtypes=INFO) as writer:
        for vid, n in [("a/x", 3), ("b/x", 0), ("c", 2)]:
            writer.add(vid, *rows_for(vid, n), source_sha256=f"sha-{vid}", info={"duration": n, "has_audio": n > 0})
        writer.add_failure("bad", "ffprobe failed:\n moov atom not found")
    store = StoreReader(path)
    assert store.ids == ["a/x", "b/x", "c"] and "c" in store and "bad" not in store
    assert store.offsets.tolist() == [0, 3, 3, 5]
    feats, times = store.get("a/x")
    np.testing.assert_array_equal(feats, rows_for("a/x", 3)[0])
    np.testing.assert_array_equal(times, [0, 0.5, 1.0])
    assert store.get("b/x")[0].shape == (0, 2, 3)
    assert store.source_sha256 == ["sha-a/x", "sha-b/x", "sha-c"]
    assert store.info("has_audio").tolist() == [True, False, True]
    assert store.failures == {"bad": "ffprobe failed: moov atom not found"}
    assert store.attrs["config"] == "c" and store.attrs["schema_version"] == 1
    with pytest.raises(StoreError, match="it failed: ffprobe failed"):
        store.get("bad")
    with h5py.File(path) as raw:  # the documented layout, as outside tools see it
        assert set(raw) >= {"ids", "offsets", "feats", "timestamps", "source_sha256", "failures"}
        assert raw["feats"].shape == (5, 2, 3) and raw["timestamps"].dtype == np.float32


def test_nothing_appears_under_the_final_name_until_commit(tmp_path):
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={})
    writer.add("a", np.zeros((2, 1), np.float32), np.zeros(2, np.float32))
    assert not path.exists() and len(list(tmp_path.glob(".s.h5.*.tmp"))) == 1
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_an_error_inside_the_writer_leaves_the_old_store(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={"version": "old"}) as writer:
        writer.add("a", np.ones((1, 1), np.float32), np.zeros(1, np.float32))
    with pytest.raises(RuntimeError), StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={}) as writer:
        writer.add("b", np.ones((1, 1), np.float32), np.zeros(1, np.float32))
        raise RuntimeError("killed")
    assert StoreReader(path).ids == ["a"] and StoreReader(path).attrs["version"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_reader_refuses_another_schema(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, row_shape=(1,), dtype=np.float32, attrs={}):
        pass
    with h5py.File(path, "a") as raw:
        raw.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema 99"):
        StoreReader(path)
    with pytest.raises(StoreError, match="no store at"):
        StoreReader(tmp_path / "missing.h5")


def build(path, rows, config="c", fail=(), checkpoint_s=30.0):
    """One builder pass: computes what is not reusable; returns (summary, computed ids)."""
    builder = StoreBuilder(
        path, config=config, row_shape=(2, 3), dtype=np.uint8, info_dtypes=INFO, checkpoint_s=checkpoint_s
    )
    computed = []
    for vid, sha in rows:
        if vid in fail:
            builder.add_failure(vid, "broken")
        elif not builder.reusable(vid, sha):
            builder.add(vid, sha, *rows_for(vid + sha, 2), info={"duration": 1.0, "has_audio": True})
            computed.append(vid)
    return builder.finish(rows), computed


def test_builder_reuses_unchanged_videos_and_recomputes_changed_ones(tmp_path):
    path = tmp_path / "s.h5"
    rows = [("a", "1"), ("b", "1"), ("c", "1")]
    summary, computed = build(path, rows)
    assert computed == ["a", "b", "c"] and not summary.unchanged
    first = path.read_bytes()
    summary, computed = build(path, rows)
    assert computed == [] and summary.unchanged and summary.reused == 3 and path.read_bytes() == first
    summary, computed = build(path, [("a", "1"), ("b", "2"), ("c", "1"), ("d", "1")])
    assert computed == ["b", "d"] and summary.reused == 2
    store = StoreReader(path)
    assert store.ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(store.get("b")[0], rows_for("b2", 2)[0])
    _, computed = build(path, rows, config="other")
    assert computed == ["a", "b", "c"]  # another config reuses nothing


def test_builder_output_is_byte_identical_whatever_the_history(tmp_path):
    rows = [("a", "1"), ("b", "1"), ("c", "1")]
    build(tmp_path / "fresh.h5", rows)
    build(tmp_path / "grown.h5", rows[:1])
    build(tmp_path / "grown.h5", rows, checkpoint_s=0)
    assert (tmp_path / "fresh.h5").read_bytes() == (tmp_path / "grown.h5").read_bytes()


def test_failures_are_recorded_and_retried(tmp_path):
    path = tmp_path / "s.h5"
    summary, _ = build(path, [("a", "1"), ("b", "1")], fail={"b"})
    assert summary.failures == {"b": "broken"} and StoreReader(path).failures == {"b": "broken"}
    assert StoreReader(path).ids == ["a"]
    _, computed = build(path, [("a", "1"), ("b", "1")])
    assert computed == ["b"] and StoreReader(path).failures == {}


def test_checkpointed_rows_survive_a_run_that_never_finished(tmp_path):
    path = tmp_path / "s.h5"
    builder = StoreBuilder(path, config="c", row_shape=(2, 3), dtype=np.uint8, info_dtypes=INFO, checkpoint_s=0)
    builder.add("a", "1", *rows_for("a1", 2), info={"duration": 1.0, "has_audio": True})
    builder.add("b", "1", *rows_for("b1", 2), info={"duration": 1.0, "has_audio": True})
    del builder  # the process died here: no finish, no final store
    assert not path.exists()
    summary, computed = build(path, [("a", "1"), ("b", "1"), ("c", "1")])
    assert computed == ["c"] and summary.reused == 2
    assert StoreReader(path).ids == ["a", "b", "c"]
    assert not (tmp_path / ".s.h5.parts").exists()
