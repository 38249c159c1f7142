"""export-parquet / import-parquet: a store as a Hugging Face dataset and back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from extract.core.errors import UserError
from extract.interop import parquet_files
from extract.interop.parquet_files import export_parquet, import_parquet
from extract.store import StoreReader, StoreWriter


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    recipe = {
        "backbone": {"model": "resnet50", "dtype": "float16"},
        "weights": {"name": "IMAGENET1K_V2", "sha256": "ab"},
    }
    attrs = {"kind": "features", "recipe": json.dumps(recipe), "config": json.dumps(recipe)}
    rows = {"clips/a": rng.normal(size=(3, 8)), "b": rng.normal(size=(1, 8)), "silent": np.zeros((0, 8))}
    with StoreWriter(tmp_path / "store", row_shape=(8,), dtype=np.float16, attrs=attrs) as writer:
        for vid, feats in rows.items():
            writer.add(vid, feats.astype(np.float16), np.arange(len(feats), dtype=np.float32) * 0.5, f"sha-{vid}")
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "split", "text", "action"])
        writer.writerows([[vid, f"{vid}.mp4", "train", f"caption {vid}", "jump"] for vid in rows])
    return tmp_path / "store", manifest


def test_export_import_and_load_dataset_give_the_same_rows_ids_and_recipe(tmp_path, store, monkeypatch):
    import pyarrow.parquet as pq
    from datasets import load_dataset

    path, manifest = store
    monkeypatch.setattr(parquet_files, "ROW_GROUP_BYTES", 40)  # a's 48 bytes of rows close a row group
    monkeypatch.setattr(parquet_files, "READ_VIDEOS", 1)
    assert export_parquet(path, tmp_path / "hf", manifest) == 3
    (shard,) = (tmp_path / "hf" / "data").glob("*.parquet")
    assert pq.ParquetFile(shard).num_row_groups == 2  # [a], [b, silent]: written as they fill, not all at once
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "IMAGENET1K_V2" in card
    imported = import_parquet(tmp_path / "hf", tmp_path / "back")
    original, again = StoreReader(path), StoreReader(imported.stores["back"])
    assert imported.videos == 3 and again.ids == original.ids and again.dtype == original.dtype
    assert again.attrs["config"] == original.attrs["config"] and again.recipe == original.recipe
    assert again.source_sha256 == original.source_sha256
    for vid in original.ids:
        for mine, theirs in zip(original.get(vid), again.get(vid), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    dataset = load_dataset("parquet", data_dir=str(tmp_path / "hf"), split="train")
    by_id = {row["id"]: row for row in dataset}
    assert set(by_id) == set(original.ids)
    np.testing.assert_array_equal(np.array(by_id["clips/a"]["rows"], np.float16), original.get("clips/a")[0])
    assert by_id["b"]["text"] == "caption b" and by_id["b"]["split"] == "train" and by_id["silent"]["rows"] == []


def test_a_file_of_another_width_and_an_escaping_id_are_refused_by_name(tmp_path, store):
    import pyarrow.parquet as pq

    path, manifest = store
    export_parquet(path, tmp_path / "hf", manifest)
    first = next((tmp_path / "hf" / "data").glob("*.parquet"))
    other = tmp_path / "other"
    with StoreWriter(other, row_shape=(4,), dtype=np.float16, attrs={"kind": "features", "config": "{}"}) as writer:
        writer.add("c", np.ones((1, 4), np.float16), np.zeros(1, np.float32))
    export_parquet(other, tmp_path / "hf4")
    wide = next((tmp_path / "hf4" / "data").glob("*.parquet"))
    wide.rename(tmp_path / "hf" / "data" / "train-99999-of-99999.parquet")
    with pytest.raises(UserError, match=r"train-99999-of-99999.parquet: rows are 4 wide, but .* are 8"):
        import_parquet(tmp_path / "hf", tmp_path / "back")
    (tmp_path / "hf" / "data" / "train-99999-of-99999.parquet").unlink()
    table = pq.read_table(first)
    ids = table.column("id").to_pylist()
    pq.write_table(table.set_column(0, "id", __import__("pyarrow").array(["../../escape", *ids[1:]])), first)
    run = subprocess.run(
        [sys.executable, "-m", "reelfeat", "import-parquet", str(tmp_path / "hf"), "--out", str(tmp_path / "b2")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 1 and "id '../../escape' has an empty, '.' or '..' part" in run.stderr
    assert [f.name for f in (tmp_path / "b2").iterdir()] == [".lock"]  # nothing published
    assert not (tmp_path.parent / "escape").exists()


def test_damaged_and_foreign_files_and_a_missing_manifest_are_one_line_naming_them(tmp_path, store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _ = store
    export = [sys.executable, "-m", "reelfeat", "export-parquet", str(path), "--out", str(tmp_path / "hf")]
    run = subprocess.run([*export, "--manifest", "nothere.csv"], capture_output=True, text=True, cwd=tmp_path)
    expected = "error: --manifest nothere.csv: no such file; name a prepared manifest, or leave it out\n"
    assert run.returncode == 1 and run.stderr == expected
    assert not (tmp_path / "hf").exists()
    export_parquet(path, tmp_path / "hf")
    data = tmp_path / "hf" / "data"
    (data / "zz-damaged.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match=r"zz-damaged.parquet: not a readable parquet file .*; remove it"):
        import_parquet(tmp_path / "hf", tmp_path / "back")
    (data / "zz-damaged.parquet").unlink()
    pq.write_table(pa.table({"id": ["x"], "rows": [[1.0]]}), data / "zz-foreign.parquet")
    with pytest.raises(UserError, match=r"zz-foreign.parquet: not written by reelfeat export-parquet"):
        import_parquet(tmp_path / "hf", tmp_path / "back")
    assert not (tmp_path / "back" / "index.json").exists()  # nothing published
