"""`insight@<name>`: duplicates and split leakage in a feature store, and `neighbours`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED

from extract.analysis import insight, knn
from extract.analysis.insight import InsightConfig, run_insight
from extract.analysis.knn import knn_graph, nearest, unit_rows
from extract.analysis.neighbours import neighbours
from extract.core.config import ConfigError
from extract.store import StoreReader, StoreWriter

SHARED_WEIGHTS = SHARED / "weights"


def feature_store(path: Path, rows: dict[str, np.ndarray], sha: dict[str, str] | None = None) -> Path:
    first = next(iter(rows.values()))
    attrs = {"kind": "features", "config": "{}"}
    with StoreWriter(path, row_shape=first.shape[1:], dtype=np.float32, attrs=attrs) as writer:
        for vid, feats in rows.items():
            writer.add(vid, feats, np.arange(len(feats), dtype=np.float32), (sha or {}).get(vid, f"sha-{vid}"))
    return path


def manifest(path: Path, splits: dict[str, str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "split", "text"])
        writer.writerows([vid, f"{vid}.mp4", split, f"caption of {vid}"] for vid, split in splits.items())
    return path


def test_exact_and_near_duplicates_are_grouped_and_train_test_groups_are_leakage(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 32)).astype(np.float32)
    rows = {
        "a": base[0][None],
        "a_again": rng.normal(size=(2, 32)).astype(np.float32),  # the same file: exact, whatever its rows
        "b": base[1][None],
        "b_copy": (base[1] + 0.01 * rng.normal(size=32)).astype(np.float32)[None],  # near
        "b_copy2": (base[1] + 0.01 * rng.normal(size=32)).astype(np.float32)[None],  # near, joins b's group
        "c": base[2][None],
        "d": base[3][None],
        "silent": np.zeros((0, 32), np.float32),  # no rows: never a duplicate
    }
    store = feature_store(tmp_path / "store", rows, {"a": "same", "a_again": "same"})
    splits = {"a": "train", "a_again": "test", "b": "val", "b_copy": "test", "b_copy2": "test", "c": "train"}
    splits |= {"d": "test", "silent": "train"}
    config = InsightConfig(store=str(store), threshold=0.95, manifest=str(manifest(tmp_path / "m.csv", splits)))
    summary = run_insight(config, tmp_path / "out")
    with open(tmp_path / "out" / "duplicates.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    groups = {}
    for row in table:
        groups.setdefault(row["group"], set()).add(row["id"])
    assert sorted(map(sorted, groups.values())) == [["a", "a_again"], ["b", "b_copy", "b_copy2"]]
    exact = {row["id"]: row["exact"] for row in table}
    assert exact["a"] == exact["a_again"] == "1" and exact["b_copy"] == "0"
    assert summary["groups"] == 2 and summary["videos_in_groups"] == 5 and summary["exact_duplicates"] == 2
    assert summary["leaking_groups"] == 1 and summary["leaks"][0]["ids"] == ["a", "a_again"]
    assert summary["leaking_test_videos"] == 1  # b's group holds val and test only
    assert summary["largest_group"] == 3 and insight.crowding(summary) is None
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    first = (tmp_path / "out" / "duplicates.csv").read_bytes()
    run_insight(config, tmp_path / "out")
    assert (tmp_path / "out" / "duplicates.csv").read_bytes() == first  # the same file on every run


@pytest.mark.parametrize("block", [3, 2048])
def test_exact_search_equals_brute_force(tmp_path, monkeypatch, block):
    monkeypatch.setattr(knn, "QUERY_BLOCK", block)  # several blocks, and one
    rng = np.random.default_rng(1)
    rows = {f"v{i:02d}": rng.normal(size=(int(rng.integers(1, 4)), 16)).astype(np.float32) for i in range(20)}
    store = feature_store(tmp_path / "s", rows)
    units, _ = unit_rows(StoreReader(store))
    found, cosines, (i, j, c) = knn_graph(units, 5, 0.3)
    brute = units @ units.T
    np.fill_diagonal(brute, -np.inf)
    expected = np.argsort(-brute, axis=1)[:, :5]
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(cosines, np.take_along_axis(brute, expected, 1), rtol=1e-5)
    upper = np.argwhere(np.triu(brute >= 0.3, 1))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(map(tuple, upper.tolist()))
    np.testing.assert_allclose(c, brute[i, j], rtol=1e-5)
    queried, _ = nearest(units, units[:4], 6)  # outside queries: each finds itself first
    np.testing.assert_array_equal(queried[:, 0], np.arange(4))
    np.testing.assert_array_equal(queried[:, 1:], expected[:4])
    listed = neighbours(store, 3, "v05", manifest=manifest(tmp_path / "m.csv", {vid: "train" for vid in rows}))
    assert [n.id for n in listed] == [
        StoreReader(store).ids[k] for k in expected[StoreReader(store).ids.index("v05"), :3]
    ]
    assert listed[0].caption == f"caption of {listed[0].id}" and listed[0].split == "train"


def test_neighbours_errors_are_one_line_naming_the_store_and_the_fix(tmp_path):
    one = feature_store(tmp_path / "one", {"only": np.ones((1, 4), np.float32)})
    two = feature_store(tmp_path / "two", {"a": np.ones((1, 4), np.float32), "b": -np.ones((1, 4), np.float32)})
    with pytest.raises(ConfigError, match="holds one video, 'only': it has no neighbours"):
        neighbours(one, 5, "only")
    cli = [sys.executable, "-m", "reelfeat", "neighbours", str(two), "zzz"]
    run = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and run.stderr.strip().startswith(f"error: {two} has no video 'zzz'")
    assert len(run.stderr.strip().splitlines()) == 1
    run = subprocess.run([*cli[:-1], "a", "-k", "1"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.split()[:3] == ["1", "-1.0000", "b"]


def test_a_listing_cut_short_by_its_reader_ends_without_a_traceback(tmp_path):
    rows = {f"v{i:04d}": np.full((1, 2), i, np.float32) + np.eye(2, dtype=np.float32)[i % 2] for i in range(3000)}
    store = feature_store(tmp_path / "many", rows)  # 3000 lines of output: more than a pipe holds
    cli = [sys.executable, "-m", "reelfeat", "neighbours", str(store), "v0001", "-k", "2999"]
    listing = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert listing.stdout.readline().split()[0] == b"1"
    listing.stdout.close()  # as `| head -1` does
    assert listing.wait(timeout=60) == 1 and listing.stderr.read() == b""


def test_neighbours_of_a_new_video_embed_it_with_the_stores_recipe(tmp_path, weights_dir):
    from conftest import make_video, save_torchvision

    clips = [
        str(make_video(tmp_path / f"c{i}.mp4", seconds=1, audio=False, extra=("-vf", f"hue=h={i * 120}")))
        for i in range(3)
    ]
    weights = save_torchvision(weights_dir, "resnet18")
    env = {"PYTHONPATH": str(ROOT), "PATH": __import__("os").environ["PATH"]}
    run = [sys.executable, "-m", "extract", "run", "resnet18", *clips, "--out", "out", "--weights", str(weights)]
    subprocess.run([*run, "--frames", "2"], check=True, cwd=tmp_path, env=env, capture_output=True)
    params = tmp_path / "params.yaml"  # where predict and neighbours find local weights by model
    params.write_text(f"backbones:\n  r18:\n    model: resnet18\n    input: x\n    weights: {weights}\n")
    ask = [sys.executable, "-m", "reelfeat", "neighbours", "out/resnet18", "--video", clips[1], "-k", "2"]
    found = subprocess.run(ask, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr
    first = found.stdout.splitlines()[0].split()
    assert first[2] == "c1" and float(first[1]) > 0.9999  # itself, remade the same way
    assert len(found.stdout.splitlines()) == 2


def test_ffmpeg_copies_of_real_clips_group_with_their_original_at_the_default_threshold(
    tmp_path, shared_media, monkeypatch
):
    """Copies made as reposts are (bench/duplicates.py's six), of real clips with sound, through `run`
    (without transcripts) and `insight`. The store is Whisper tiny.en's pooled encoder rows: its trained
    weights are the only ones for a video's content this offline machine has (../shared/weights), and
    random weights make the property meaningless (random ResNet50's pooled rows put every pair of
    clips at 0.995 or above). Audio passes the visual edits (crop, watermark, mirror) only re-encoded, so these
    copies test speed-up, trimming and re-encoding; the visual backbones' threshold is not tested."""
    monkeypatch.syspath_prepend(str(ROOT))  # bench/ is beside the packages, not one of them
    from bench.duplicates import COPIES, make_copies

    weights = SHARED_WEIGHTS / "whisper-tiny.en.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} is absent")
    sources = [shared_media / name for name in ("tiktok_talking.mp4", "tiktok_dance_hevc.mp4", "bigbuckbunny.mp4")]
    sources.append(shared_media / "paddlevideo_example.avi")  # bigbuckbunny's nearest other clip: 0.93 at 10 s
    origin = make_copies(sources, tmp_path / "videos", seconds=8, height=144)
    reupload = tmp_path / "videos" / "tiktok_talking_again.mp4"  # the same file under another id
    reupload.write_bytes((tmp_path / "videos" / "tiktok_talking.mp4").read_bytes())
    origin[reupload.stem] = "tiktok_talking"
    videos = sorted(f"videos/{path.name}" for path in (tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == len(sources) * (len(COPIES) + 1) + 1
    run = [sys.executable, "-m", "extract", "run", "whisper", *videos, "--out", "out", "--weights", str(weights)]
    subprocess.run([*run, "--set", "transcribe=false"], check=True, cwd=tmp_path, capture_output=True)
    splits = {f"videos/{stem}": "train" if stem == source else "test" for stem, source in origin.items()}
    config = InsightConfig(store=str(tmp_path / "out" / "whisper"), manifest=str(manifest(tmp_path / "m.csv", splits)))
    assert config.threshold == insight.DEFAULT_THRESHOLD
    summary = run_insight(config, tmp_path / "insight")
    with open(tmp_path / "insight" / "duplicates.csv", newline="") as handle:
        group_of = {Path(row["id"]).name: row["group"] for row in csv.DictReader(handle)}
    assert set(group_of) == set(origin)  # every video is in a group
    sources_of = {}
    for stem, group in group_of.items():
        sources_of.setdefault(group, set()).add(origin[stem])
    assert sorted(map(sorted, sources_of.values())) == [[source.stem] for source in sorted(sources)]
    assert summary["exact_duplicates"] == 2 and summary["leaking_groups"] == len(sources)


def test_neighbours_asks_for_one_or_more(tmp_path):
    two = feature_store(tmp_path / "two", {"a": np.ones((1, 4), np.float32), "b": -np.ones((1, 4), np.float32)})
    with pytest.raises(ConfigError, match="-k 0: ask for 1 or more"):
        neighbours(two, 0, "a")


def test_a_store_whose_rows_tell_nothing_apart_is_warned_about(tmp_path):
    """Random weights put every pair of clips near 1: one group swallows the store, and the user hears it."""
    rows = {f"v{i}": np.ones((1, 8), np.float32) + 1e-4 * i for i in range(6)}
    store = feature_store(tmp_path / "flat", rows)
    params = tmp_path / "params.yaml"
    params.write_text(f"insight:\n  flat:\n    store: {store}\n    manifest: {manifest(tmp_path / 'm.csv', {})}\n")
    run = subprocess.run(
        [sys.executable, "-m", "reelfeat", "--params", str(params), "insight", "flat", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0
    assert (
        run.stderr.startswith("warning: insight@flat: one duplicate group holds 6 of 6 videos")
        and "weights" in run.stderr
    )
