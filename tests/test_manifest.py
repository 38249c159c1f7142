"""The manifest: formats, ids, table errors that name file, line and fix, and the made split."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from extract.core.config import ConfigError
from extract.core.split import iterative_stratification, make_split
from extract.stages.manifest import ManifestError, PrepareConfig, prepare, prepare_config, read_table, write_prepared


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def run_prepare(tmp_path: Path, table: str | bytes, name: str = "m.csv", **config) -> list[dict[str, str]]:
    path = write(tmp_path / name, table)
    return prepare(PrepareConfig(manifest=str(path), **config), root=tmp_path).rows


def error_of(tmp_path: Path, table: str | bytes, name: str = "m.csv", **config) -> str:
    with pytest.raises(ManifestError) as info:
        run_prepare(tmp_path, table, name, **config)
    return str(info.value)


def test_csv_tsv_jsonl_and_paddle_files_read_alike(tmp_path):
    write(tmp_path / "a.csv", 'video,text,tags\nx.mp4,"hello, world","t1,t2"\n')
    write(tmp_path / "a.tsv", "video\ttext\ttags\nx.mp4\thello, world\tt1,t2\n")
    write(tmp_path / "a.jsonl", '{"video": "x.mp4", "text": "hello, world", "tags": ["t1", "t2"]}\n\n')
    write(tmp_path / "a.txt", "x.mp4\thello, world\tt1,t2\n")
    for name in ["a.csv", "a.tsv", "a.jsonl"]:
        assert [row.values for row in read_table(tmp_path / name)] == [
            {"video": "x.mp4", "text": "hello, world", "tags": "t1,t2"}
        ], name
    assert read_table(tmp_path / "a.txt")[0].values == {"video": "x.mp4", "text": "hello, world", "labels": "t1,t2"}


def test_paddlevideo_split_file_prepares_with_multi_label_split(tmp_path):
    lines = "".join(f"v{i}.mp4\ttitle {i}\t{'拍人-帅哥,' if i % 2 else ''}明星周边\n" for i in range(10))
    rows = run_prepare(tmp_path, lines, name="train.list.txt", columns={"labels": "multi_label"}, stratify="labels")
    assert [r["id"] for r in rows] == [f"v{i}" for i in range(10)]
    assert rows[1]["labels"] == "拍人-帅哥,明星周边"
    assert Counter(r["split"] for r in rows) == {"train": 8, "val": 1, "test": 1}


def test_ids_keep_relative_folders_so_same_names_never_collide(tmp_path):
    rows = run_prepare(tmp_path, "video\na/x.mp4\nb/x.mp4\nc/y.webm\n")
    assert [r["id"] for r in rows] == ["a/x", "b/x", "c/y"]
    assert [r["video"] for r in rows] == ["a/x.mp4", "b/x.mp4", "c/y.webm"]


def test_paths_resolve_against_the_manifest_folder_and_files_are_hashed(tmp_path):
    write(tmp_path / "data" / "clips" / "my clip é.mp4", b"not really a video")
    rows = run_prepare(tmp_path / "data", "video,id\nclips/my clip é.mp4,k1\nclips/gone.mp4,k2\n")
    # root is tmp_path/data here, so paths are relative to it
    assert rows[0]["video"] == "clips/my clip é.mp4" and rows[0]["id"] == "k1"
    assert rows[0]["sha256"] == hashlib.sha256(b"not really a video").hexdigest()
    assert rows[1]["sha256"] == ""  # a missing video is decode's failure to record, not a table error


def test_videos_outside_the_watched_folder_are_reported(tmp_path):
    path = write(tmp_path / "m.csv", "video\nclips/a.mp4\nelsewhere/b.mp4\n")
    prepared = prepare(PrepareConfig(manifest=str(path), videos="clips"), root=tmp_path)
    assert prepared.unwatched == ["elsewhere/b"]


def test_missing_required_column_names_file_line_and_fix(tmp_path):
    message = error_of(tmp_path, "path,text\nx.mp4,hi\n")
    assert "m.csv:1: required column 'video' is missing" in message
    assert "Fix: add a `video` column" in message


def test_missing_label_column_named_in_params(tmp_path):
    assert "required column 'risky' is missing" in error_of(tmp_path, "video\nx.mp4\n", columns={"risky": "binary"})


def test_duplicate_ids_name_both_lines(tmp_path):
    message = error_of(tmp_path, "video,id\na.mp4,same\nb.mp4,other\nc.mp4,same\n")
    assert "m.csv:4: id 'same' already used on line 2" in message and "Fix: give each row a unique `id`" in message


def test_unknown_split_value(tmp_path):
    message = error_of(tmp_path, "video,split\na.mp4,train\nb.mp4,holdout\n")
    assert "m.csv:3: unknown split value 'holdout'" in message and "train, val, test" in message


def test_caption_bytes_that_are_not_utf8_name_the_line(tmp_path):
    table = b"video,text\na.mp4,fine\n" + b"b.mp4,caf\xe9 au lait\n"
    message = error_of(tmp_path, table)
    assert "m.csv:3: byte 0xe9 is not valid UTF-8" in message and "iconv" in message


def test_unparseable_labels_each_named(tmp_path):
    table = "video,risky,views\na.mp4,maybe,10\nb.mp4,yes,lots\nc.mp4,no,3.5\n"
    message = error_of(tmp_path, table, columns={"risky": "binary", "views": "number"})
    assert "m.csv:2: column 'risky': 'maybe' is not a binary label" in message
    assert "m.csv:3: column 'views': 'lots' is not a number" in message


def test_skip_bad_rows_records_them_and_keeps_the_rest(tmp_path):
    path = write(tmp_path / "m.csv", "video,risky,split\na.mp4,yes,train\nb.mp4,perhaps,train\nc.mp4,0,test\n")
    config = PrepareConfig(manifest=str(path), columns={"risky": "binary"}, skip_bad_rows=True)
    prepared = prepare(config, root=tmp_path)
    assert [(r["id"], r["risky"]) for r in prepared.rows] == [("a", "1"), ("c", "0")]
    write_prepared(prepared, tmp_path / "out")
    with open(tmp_path / "out" / "rejected.csv", newline="") as handle:
        rejected = list(csv.DictReader(handle))
    assert rejected[0]["line"] == "3" and "perhaps" in rejected[0]["problem"]


def test_row_with_too_many_fields(tmp_path):
    assert "m.csv:3: 3 fields, header has 2" in error_of(tmp_path, "video,text\na.mp4,x\nb.mp4,x,y\n")


def test_made_split_is_seeded_stratified_and_80_10_10(tmp_path):
    table = "video,action\n" + "".join(f"v{i}.mp4,{'abcd'[i % 4]}\n" for i in range(40))
    config = {"columns": {"action": "multi_class"}, "stratify": "action"}
    rows = run_prepare(tmp_path, table, **config)
    assert Counter(r["split"] for r in rows) == {"train": 32, "val": 4, "test": 4}
    for split in ("train", "val", "test"):
        per_class = Counter(r["action"] for r in rows if r["split"] == split)
        assert len(set(per_class.values())) == 1, (split, per_class)  # same count of every class
    assert [r["split"] for r in run_prepare(tmp_path, table, **config)] == [r["split"] for r in rows]
    assert [r["split"] for r in run_prepare(tmp_path, table, seed=1, **config)] != [r["split"] for r in rows]


def test_given_split_is_kept(tmp_path):
    rows = run_prepare(tmp_path, "video,split\na.mp4,Train\nb.mp4, test\n")
    assert [r["split"] for r in rows] == ["train", "test"]


def test_iterative_stratification_balances_every_label():
    rng = np.random.default_rng(0)
    labels = rng.random((400, 6)) < np.array([0.5, 0.3, 0.1, 0.05, 0.3, 0.02])
    fold = iterative_stratification(labels, (0.8, 0.1, 0.1), seed=0)
    assert np.bincount(fold).tolist() == pytest.approx([320, 40, 40], abs=2)
    for j in range(labels.shape[1]):
        total = labels[:, j].sum()
        per_fold = [labels[fold == f, j].sum() for f in range(3)]
        np.testing.assert_allclose(per_fold, np.array([0.8, 0.1, 0.1]) * total, atol=1.0)


def test_unstratified_split_is_random_but_sized():
    assert Counter(make_split(None, 10, (0.8, 0.1, 0.1), seed=3)) == {"train": 8, "val": 1, "test": 1}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"manifest": "m.csv", "colums": {}}, r"unknown key\(s\) \['colums'\]"),
        ({"manifest": "m.csv", "columns": {"x": "boolean"}}, "'boolean' is not one of"),
        ({"manifest": "m.csv", "stratify": "x"}, "must be one of the label columns"),
        ({}, "manifest"),
    ],
)
def test_bad_prepare_params(params, message):
    with pytest.raises(ConfigError, match=message):
        prepare_config(params)


def test_a_rerun_hashes_only_the_videos_that_changed(tmp_path, monkeypatch):
    from extract.core import files
    from extract.core.files import HashCache
    from extract.stages.manifest import PrepareConfig, prepare

    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mp4").write_bytes(name.encode() * 100)
    (tmp_path / "m.csv").write_text("video\na.mp4\nb.mp4\nc.mp4\n")
    config = PrepareConfig(manifest=str(tmp_path / "m.csv"))
    hashed = []
    real = files.file_sha256
    monkeypatch.setattr(files, "file_sha256", lambda path: hashed.append(Path(path).name) or real(path))

    def run() -> dict[str, str]:
        cache = HashCache(tmp_path / ".sha256-cache.json")
        rows = prepare(config, root=tmp_path, hashes=cache).rows
        cache.save()
        return {row["id"]: row["sha256"] for row in rows}

    first = run()
    assert sorted(hashed) == ["a.mp4", "b.mp4", "c.mp4"]
    hashed.clear()
    (tmp_path / "b.mp4").write_bytes(b"changed")
    second = run()
    assert hashed == ["b.mp4"]
    assert second["a"] == first["a"] == real(tmp_path / "a.mp4") and second["b"] == real(tmp_path / "b.mp4")


def test_ids_that_would_leave_a_folder_are_refused_by_prepare_naming_each_row(tmp_path, monkeypatch, capsys):
    from extract.__main__ import main
    from extract.core.cli import EXIT_ERROR

    write(tmp_path / "params.yaml", "prepare:\n  manifest: m.csv\n")
    table = 'id,video\n../../escape/x,a.mp4\n/abs/x,b.mp4\n"a\x01b",c.mp4\nx//y,d.mp4\nok/fine,e.mp4\n'
    write(tmp_path / "m.csv", table)
    monkeypatch.chdir(tmp_path)
    assert main(["prepare"]) == EXIT_ERROR
    said = capsys.readouterr().err
    assert "m.csv:2: id '../../escape/x' has an empty, '.' or '..' part. Fix: change the id" in said
    assert "m.csv:3: id '/abs/x' is an absolute path" in said
    assert "m.csv:4: id 'a\\x01b' holds a control character" in said
    assert "m.csv:5: id 'x//y' has an empty" in said and "m.csv:6" not in said
    assert not (tmp_path / "data").exists()


def test_export_numpy_refuses_a_stored_id_that_would_leave_the_folder(tmp_path, monkeypatch, capsys):
    from extract.__main__ import main
    from extract.core.cli import EXIT_ERROR
    from extract.store import StoreWriter

    with StoreWriter(tmp_path / "store", row_shape=(4,), dtype=np.float32, attrs={"kind": "features"}) as writer:
        writer.add("../../escape/x", np.ones((2, 4), np.float32), np.arange(2, dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    assert main(["export-numpy", "store", "--out", "deep/out"]) == EXIT_ERROR
    said = capsys.readouterr().err
    assert "'../../escape/x_store.npy' would be written outside deep/out" in said and len(said.splitlines()) == 1
    assert not (tmp_path / "escape").exists()
