"""The notebook API: `reelfeat.open_store`, `FeatureDataset` over stores and a manifest, and NumPy files
per video in video_features' layout, exported and imported back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import reelfeat
from extract.core.cli import EXIT_ERROR, EXIT_OK
from extract.core.errors import UserError
from extract.store import StoreReader, StoreWriter
from reelfeat.cli import main

COUNTS = {"a": 3, "b": 0, "clips/c": 5, "d": 1}  # rows per video; b has none (a silent clip)


def write_store(path, dim: int, counts: dict[str, int], seed: int) -> StoreReader:
    rng = np.random.default_rng(seed)
    with StoreWriter(path, row_shape=(dim,), dtype=np.float16, attrs={"config": "test"}) as writer:
        for vid, count in counts.items():
            writer.add(vid, rng.normal(size=(count, dim)).astype(np.float16), np.arange(count, dtype=np.float32) * 0.5)
    return StoreReader(path)


@pytest.fixture
def stores(tmp_path):
    image = write_store(tmp_path / "image", 6, COUNTS, 0)
    audio = write_store(tmp_path / "audio", 4, {vid: n + 1 for vid, n in COUNTS.items() if vid != "d"}, 1)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "split", "label"])
        for vid, split in [("a", "train"), ("b", "train"), ("clips/c", "val"), ("d", "train"), ("e", "train")]:
            writer.writerow([vid, f"{vid}.mp4", split, "1"])
    return image, audio, manifest


def test_sequences_match_the_store_for_every_id(stores):
    image, _, _ = stores
    data = reelfeat.FeatureDataset([image.path])
    assert data.ids == image.ids
    for i, vid in enumerate(image.ids):
        rows, times = image.get(vid)
        item = data[i]
        assert item["id"] == vid and item["image"].dtype == torch.float32
        np.testing.assert_array_equal(item["image"].numpy(), rows.astype(np.float32))
        np.testing.assert_array_equal(item["image_timestamps"].numpy(), times)
        assert bool(item["missing"][0]) == (len(rows) == 0)


def test_max_len_keeps_evenly_spaced_rows_with_their_timestamps_as_heads_read_them(stores):
    image, _, _ = stores
    data = reelfeat.FeatureDataset([image.path], max_len=2)
    for i, vid in enumerate(data.ids):
        rows, times = image.get(vid)
        kept = np.linspace(0, len(rows) - 1, 2).round().astype(int) if len(rows) > 2 else np.arange(len(rows))
        np.testing.assert_array_equal(data[i]["image"].numpy(), rows[kept].astype(np.float32))
        np.testing.assert_array_equal(data[i]["image_timestamps"].numpy(), times[kept])


def test_pooled_items_are_the_mean_or_max_of_the_rows_and_zeros_without_rows(stores):
    image, _, _ = stores
    for pool, reduce in [("mean", np.mean), ("max", np.max)]:
        data = reelfeat.FeatureDataset({"image": image.path}, pool=pool)
        for i, vid in enumerate(data.ids):
            rows = image.get(vid)[0].astype(np.float32)
            expected = reduce(rows, axis=0) if len(rows) else np.zeros(6, np.float32)
            np.testing.assert_allclose(data[i]["image"].numpy(), expected, rtol=1e-6)


def test_a_manifest_keeps_its_split_and_the_videos_every_store_has(stores):
    image, audio, manifest = stores
    data = reelfeat.FeatureDataset({"image": image.path, "audio": audio.path}, manifest=manifest, split="train")
    assert data.ids == ["a", "b"]  # d has no audio rows stored, e is in no store, clips/c is val
    assert data[0]["row"]["label"] == "1" and data.dims() == {"image": 6, "audio": 4}
    with pytest.raises(UserError, match="split='train' needs a manifest"):
        reelfeat.FeatureDataset([image.path], split="train")
    with pytest.raises(UserError, match="pool='sum'"):
        reelfeat.FeatureDataset([image.path], pool="sum")


def test_padded_batches_through_a_dataloader_with_workers(stores):
    image, audio, manifest = stores
    data = reelfeat.FeatureDataset({"image": image.path, "audio": audio.path}, manifest=manifest)
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=data.collate)
    seen = []
    for batch in loader:
        for j, vid in enumerate(batch["ids"]):
            seen.append(vid)
            for key, reader in (("image", image), ("audio", audio)):
                rows = reader.get(vid)[0].astype(np.float32)
                mask = batch[f"{key}_mask"][j]
                assert int(mask.sum()) == len(rows) and not mask[len(rows) :].any()
                np.testing.assert_array_equal(batch[key][j][: len(rows)].numpy(), rows)
                assert not batch[key][j][len(rows) :].any()  # padding is zeros
            assert batch["missing"][j].tolist() == [image.get(vid)[0].size == 0, audio.get(vid)[0].size == 0]
    assert seen == ["a", "b", "clips/c"]


def test_export_writes_video_features_files_and_import_gives_the_same_rows(stores, tmp_path):
    image, _, _ = stores
    assert main(["export-numpy", str(image.path), "--out", str(tmp_path / "npy"), "--feature-type", "resnet"]) == 0
    rows = np.load(tmp_path / "npy" / "clips" / "c_resnet.npy")
    assert rows.dtype == np.float32 and rows.shape == (5, 6)  # as video_features saves them
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "a_timestamps_ms.npy"), [0.0, 500.0, 1000.0])

    code = main(["import-numpy", str(tmp_path / "npy"), "--feature-type", "resnet", "--out", str(tmp_path / "back")])
    assert code == EXIT_OK
    back = StoreReader(tmp_path / "back")
    assert sorted(back.ids) == sorted(image.ids) and back.dtype == np.float32
    for vid in image.ids:
        rows, times = image.get(vid)
        theirs, their_times = back.get(vid)
        np.testing.assert_array_equal(theirs, rows.astype(np.float32))
        np.testing.assert_allclose(their_times, times)

    reelfeat.import_numpy(tmp_path / "npy", "resnet", tmp_path / "half", dtype="float16")
    np.testing.assert_array_equal(StoreReader(tmp_path / "half").get("a")[0], image.get("a")[0])  # exact: float16 in


def test_import_refuses_files_it_cannot_read_naming_them(tmp_path, capsys):
    folder = tmp_path / "npy"
    folder.mkdir()
    assert main(["import-numpy", str(folder), "--feature-type", "vggish", "--out", str(tmp_path / "s")]) == EXIT_ERROR
    assert "no *_vggish.npy files" in capsys.readouterr().err
    np.save(folder / "a_vggish.npy", np.zeros((2, 128), np.float32))
    np.save(folder / "b_vggish.npy", np.zeros((2, 64), np.float32))
    assert main(["import-numpy", str(folder), "--feature-type", "vggish", "--out", str(tmp_path / "s")]) == EXIT_ERROR
    assert "b_vggish.npy: rows of shape (2, 64)" in capsys.readouterr().err
    assert not (tmp_path / "s" / "index.json").exists()  # nothing half-written under the final name
    np.save(folder / "b_vggish.npy", np.array([{"x": 1}], dtype=object))  # a pickle is never loaded
    assert main(["import-numpy", str(folder), "--feature-type", "vggish", "--out", str(tmp_path / "s")]) == EXIT_ERROR
    assert "b_vggish.npy: not a NumPy array of numbers" in capsys.readouterr().err
    np.save(folder / "a_vggish.npy", np.zeros(128, np.float32))  # the first file 1-D
    assert main(["import-numpy", str(folder), "--feature-type", "vggish", "--out", str(tmp_path / "s")]) == EXIT_ERROR
    said = capsys.readouterr().err
    assert (
        said == f"error: {folder / 'a_vggish.npy'}: an array of shape (128,); each file holds (rows, width) features\n"
    )


def test_the_api_names_resolve_lazily_to_the_real_classes():
    from extract.store import StoreReader as Reader
    from heads.dataset import FeatureDataset

    assert reelfeat.open_store is Reader and reelfeat.FeatureDataset is FeatureDataset
    with pytest.raises(AttributeError, match="the API is"):
        reelfeat.load_everything  # noqa: B018
