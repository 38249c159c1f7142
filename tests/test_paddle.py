"""PaddleVideo MultimodalVideoTag interop: export and import round trip, and pickles kept in check."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from extract.__main__ import main
from extract.core.cli import EXIT_ERROR
from extract.interop.paddle import PickleRefused, export_paddle, import_paddle, load_plain_pickle
from extract.store import StoreReader, StoreWriter


def feature_store(path: Path, dim: int, videos: dict[str, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with StoreWriter(path, row_shape=(dim,), dtype=np.float32, attrs={"kind": "features"}) as writer:
        for vid, rows in videos.items():
            writer.add(vid, rng.normal(size=(rows, dim)).astype(np.float32), np.arange(rows, dtype=np.float32), "s")
    return path


def test_export_then_import_gives_the_same_features_labels_and_splits(tmp_path):
    videos = {"clips/a": 5, "clips/b": 3, "clips/c": 7}
    image = feature_store(tmp_path / "resnet50", 2048, videos, 0)
    audio = feature_store(tmp_path / "vggish", 128, {"clips/a": 2, "clips/b": 0, "clips/c": 4}, 1)
    manifest = tmp_path / "manifest.csv"
    rows = [
        ("clips/a", "clips/a.mp4", "train", "cold beer", "music,talking"),
        ("clips/b", "clips/b.mp4", "val", "yoga", ""),
        ("clips/c", "clips/c.mp4", "test", "soup", "bright"),
    ]
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "split", "text", "tags"])
        writer.writerows(rows)
    out = tmp_path / "paddle"
    assert export_paddle(image, audio, manifest, "tags", out) == 3
    assert (out / "class.txt").read_text() == "bright\nmusic\ntalking\n"
    assert (out / "train.txt").read_text() == "a.mp4\tcold beer\tmusic,talking\n"
    record = pickle.load(open(out / "feature_files" / "a.pkl", "rb"), encoding="iso-8859-1")
    assert record["feature"]["image_pkl"].shape == (5, 2048) and record["video"] == "a.mp4"

    back = tmp_path / "back"
    splits = {name: out / f"{name}.txt" for name in ("train", "val", "test")}
    written = import_paddle(out / "feature_files", splits, out / "class.txt", back, trust_pickle=True)
    assert written.videos == 3 and set(written.stores) == {"paddle_image", "paddle_audio"}
    imported = StoreReader(written.stores["paddle_image"])
    assert imported.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(imported.get("c")[0], StoreReader(image).get("clips/c")[0])
    np.testing.assert_array_equal(
        StoreReader(written.stores["paddle_audio"]).get("a")[0], StoreReader(audio).get("clips/a")[0]
    )
    assert StoreReader(written.stores["paddle_audio"]).get("b")[0].shape == (0, 128)
    with open(written.manifest, newline="") as handle:
        assert [(r["id"], r["split"], r["labels"], r["text"]) for r in csv.DictReader(handle)] == [
            ("a", "train", "music,talking", "cold beer"),
            ("b", "val", "", "yoga"),
            ("c", "test", "bright", "soup"),
        ]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/reelfeat-pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"feature": Exploit()}))
    with pytest.raises(PickleRefused, match="refers to posix.system"):
        load_plain_pickle(bad)
    assert not Path("/tmp/reelfeat-pwned").exists()


def test_pickles_are_not_read_without_trust(tmp_path, capsys):
    (tmp_path / "f").mkdir()
    (tmp_path / "train.txt").write_text("a.mp4\ttitle\tx\n")
    code = main(
        [
            "import-paddle",
            "--features",
            str(tmp_path / "f"),
            "--split",
            f"train={tmp_path / 'train.txt'}",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == EXIT_ERROR and "pass --trust-pickle if you trust their source" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
