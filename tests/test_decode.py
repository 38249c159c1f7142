"""The prepare and decode stages as users run them: bad input, exit codes, kills and reruns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, ffmpeg, make_video

from extract import media
from extract.__main__ import main
from extract.core.cli import EXIT_ERROR, EXIT_OK, EXIT_VIDEOS_FAILED
from extract.core.settings import Settings
from extract.stages.decode import run_decode, views_from_params
from extract.stages.manifest import read_prepared
from extract.store import StoreReader

VIEWS = {
    "frames": {"type": "frames", "num_frames": 4, "max_seconds": 1.0, "size": [24, 32]},
    "clips": {"type": "clips", "num_clips": 1, "clip_len": 3, "fps": 10, "max_seconds": 1.0, "size": [16, 16]},
    "audio": {"type": "audio", "sample_rate": 16000},
}


def make_project(root: Path, videos: list[str], views: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    table = "video,text\n" + "".join(f'"{v}",caption {i}\n' for i, v in enumerate(videos))
    (root / "manifest.csv").write_text(table, encoding="utf-8")
    params = {"prepare": {"manifest": "manifest.csv"}, "decode": {"views": views or VIEWS}}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def run_cli(root: Path, *args: str, capsys=None) -> tuple[int, str, str]:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        code = main(list(args))
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


# Each bad input is a file in one project; one decode run covers them all.
CASES = {
    "good.mp4": "ok",
    "with space é/naïve clip.mp4": "ok",
    "no_audio.mp4": "ok, no audio",
    "one_frame.mp4": "ok, no audio",
    "shorter.mp4": "ok",
    "missing.mp4": "file not found",
    "zero.mp4": "empty file (0 bytes)",
    "truncated.mp4": "probe: FFmpeg cannot read it: moov atom not found",
    "truncated_faststart.mp4": "truncated video: its index lists",
    "text.mp4": "probe: FFmpeg cannot read it: moov atom not found",
    "audio_only.mp4": "decode: no video stream (audio-only file)",
}


@pytest.fixture(scope="module")
def bad_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    make_video(root / "good.mp4")
    make_video(root / "with space é" / "naïve clip.mp4")
    make_video(root / "no_audio.mp4", audio=False)
    make_video(root / "one_frame.mp4", extra=("-frames:v", "1"), audio=False)
    make_video(root / "shorter.mp4", seconds=0.4)  # views sample the first 1 s
    (root / "zero.mp4").write_bytes(b"")
    whole = make_video(root / "whole.mp4", seconds=3).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # index at the end: cut off
    fast = make_video(root / "fast.mp4", seconds=3, extra=("-movflags", "+faststart")).read_bytes()
    (root / "truncated_faststart.mp4").write_bytes(fast[: len(fast) // 2])  # index promises missing frames
    (root / "text.mp4").write_text("just some text\n" * 50)
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac", str(root / "audio_only.mp4"))
    make_project(root, list(CASES))
    return root


@pytest.fixture(scope="module")
def bad_run(bad_project):
    assert main_in(bad_project, "prepare") == EXIT_OK
    done = subprocess.run(
        [sys.executable, "-m", "extract", "decode"],
        cwd=bad_project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return done, {name: StoreReader(bad_project / "data" / "decoded" / f"{name}") for name in VIEWS}


def main_in(root: Path, *args: str) -> int:
    return run_cli(root, *args)[0]


def vid_of(video: str) -> str:
    return video.rsplit(".", 1)[0]


@pytest.mark.parametrize("video", list(CASES))
def test_each_bad_input_is_recorded_and_the_rest_decoded(bad_run, video):
    done, stores = bad_run
    expected, vid = CASES[video], vid_of(video)
    if expected.startswith("ok"):
        frames, times = stores["frames"].get(vid)
        assert frames.shape == (4, 24, 32, 3) and frames.dtype == np.uint8 and frames.max() > 0
        assert stores["clips"].get(vid)[0].shape == (1, 3, 16, 16, 3)
        audio, _ = stores["audio"].get(vid)
        has_audio = stores["audio"].info("has_audio")[stores["audio"].ids.index(vid)]
        assert has_audio == (expected == "ok") and (len(audio) > 0) == has_audio
        assert np.all(np.diff(times) >= 0) and times[-1] < 1.0
    elif video == "audio_only.mp4":
        assert stores["frames"].failures[vid] == expected and vid not in stores["frames"]
        assert len(stores["audio"].get(vid)[0]) == pytest.approx(16000, abs=1100)
    else:
        for store in stores.values():
            assert vid not in store and expected in store.failures[vid]
        assert f"  {vid}: " in done.stdout and expected in done.stdout.split(f"  {vid}: ")[1].split("\n")[0]


def test_bad_inputs_make_exit_code_3_and_a_summary(bad_run):
    done, _ = bad_run
    assert done.returncode == EXIT_VIDEOS_FAILED, done.stderr
    assert "6 video(s) failed:" in done.stdout
    assert "frames: data/decoded/frames written: 5 decoded, 0 reused, 6 failed" in done.stdout
    assert "audio: data/decoded/audio written: 6 decoded, 0 reused, 5 failed" in done.stdout


def test_allow_failures_exits_0_and_reuses_everything(bad_project, bad_run, capsys):
    code, out, _ = run_cli(bad_project, "decode", "--allow-failures", capsys=capsys)
    assert code == EXIT_OK
    assert "audio: data/decoded/audio unchanged: 0 decoded, 6 reused, 5 failed" in out  # failures retried


def test_one_frame_video_repeats_its_only_frame(bad_run):
    frames, times = bad_run[1]["frames"].get("one_frame")
    assert all(np.array_equal(frames[0], f) for f in frames) and times.tolist() == [0, 0, 0, 0]


def test_bad_manifest_stops_prepare_with_file_and_line(tmp_path, capsys):
    root = make_project(tmp_path, ["a.mp4", "a.mp4"])
    code, _, err = run_cli(root, "prepare", capsys=capsys)
    assert code == EXIT_ERROR
    assert "manifest.csv:3: id 'a' already used on line 2. Fix:" in err


def test_all_good_exits_0(tmp_path, capsys):
    make_video(tmp_path / "v.mp4")
    root = make_project(tmp_path, ["v.mp4"])
    assert run_cli(root, "prepare", capsys=capsys)[0] == EXIT_OK
    code, out, _ = run_cli(root, "decode", capsys=capsys)
    assert code == EXIT_OK and "failed:" not in out


def test_added_video_is_the_only_one_decoded_and_changed_view_the_only_one_redone(tmp_path, monkeypatch):
    for i in range(3):
        make_video(tmp_path / f"v{i}.mp4", seconds=1)
    root = make_project(tmp_path, ["v0.mp4", "v1.mp4"])
    monkeypatch.chdir(root)  # stages run from the project root, as DVC runs them
    assert main_in(root, "prepare") == EXIT_OK
    views = views_from_params({"views": VIEWS})
    first = run_decode(read_prepared(root / "data/prepared/manifest.csv"), views, root / "out", workers=2)
    assert {name: s.computed for name, s in first.items()} == {"frames": 2, "clips": 2, "audio": 2}

    make_project(root, ["v0.mp4", "v1.mp4", "v2.mp4"])
    assert main_in(root, "prepare") == EXIT_OK
    rows = read_prepared(root / "data/prepared/manifest.csv")
    grown = run_decode(rows, views, root / "out", workers=2)
    assert {name: (s.computed, s.reused) for name, s in grown.items()} == {n: (1, 2) for n in VIEWS}
    assert StoreReader(root / "out" / "frames").ids == ["v0", "v1", "v2"]

    bigger = views_from_params({"views": {**VIEWS, "frames": {**VIEWS["frames"], "size": [32, 32]}}})
    redone = run_decode(rows, bigger, root / "out", workers=2)
    assert {name: s.computed for name, s in redone.items()} == {"frames": 3, "clips": 0, "audio": 0}
    assert StoreReader(root / "out" / "frames").row_shape == (32, 32, 3)


def test_seek_modes_store_the_real_times_of_the_frames_they_found(tmp_path):
    video = make_video(tmp_path / "long_gop.mp4", seconds=6, rate=30, audio=False, gop=300, extra=("-bf", "3"))
    rows = [{"id": "v", "video": str(video), "sha256": "x"}]
    view = {"type": "frames", "num_frames": 8, "max_seconds": None, "size": [16, 16]}
    views = views_from_params({"views": {seek: {**view, "seek": seek} for seek in ("exact", "fast", "keyframes")}})
    run_decode(rows, views, tmp_path / "out", workers=0)
    meta = media.probe(video)
    real = meta.frame_times - meta.frame_times[0]
    times = {seek: StoreReader(tmp_path / "out" / seek).get("v")[1] for seek in views}
    for seek, stamps in times.items():
        assert len(stamps) == 8 and np.abs(real[None, :] - stamps[:, None]).min(1).max() < 1e-4, seek
    assert np.abs(times["fast"] - times["exact"]).max() <= 0.1 + 1e-4
    assert set(np.round(times["keyframes"], 4)) <= set(np.round(meta.keyframe_times - meta.frame_times[0], 4))


def gone(pid: int, wait_s: float = 30) -> bool:
    """Whether process `pid` has ended (or become a zombie) within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def test_kill_9_mid_decode_then_rerun_gives_a_complete_store(tmp_path):
    videos = [f"v{i:02d}.mp4" for i in range(14)]
    for name in videos:
        make_video(tmp_path / name, seconds=0.5, size="32x32", audio=False)
    views = {"frames": {"type": "frames", "num_frames": 3, "size": [16, 16]}}
    root = make_project(tmp_path, videos, views)
    assert main_in(root, "prepare") == EXIT_OK
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REELFEAT_WORKERS": "1", "REELFEAT_CHECKPOINT_S": "0"}
    out = root / "data" / "decoded"
    proc = subprocess.Popen(
        [sys.executable, "-m", "extract", "decode"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while len(list((out / "frames").glob("shard-*.h5"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert workers and all(gone(int(pid)) for pid in workers)  # the decode workers do not outlive it
    assert not (out / "frames" / "index.json").exists()  # no store until a run finishes; its shards are whole
    saved = len(list((out / "frames").glob("shard-*.h5")))
    assert 3 <= saved < len(videos)

    rerun = subprocess.run(
        [sys.executable, "-m", "extract", "decode"], cwd=root, env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(videos) - saved} decoded, {saved} reused, 0 failed" in rerun.stdout
    store = StoreReader(out / "frames")
    assert store.ids == [vid_of(v) for v in videos]  # complete, in manifest order, no duplicates
    assert store.offsets.tolist() == list(range(0, 3 * len(videos) + 1, 3))
    assert not [p for p in (out / "frames").iterdir() if p.name.endswith(".tmp")]  # no temp files left
    assert {p.name for p in (out / "frames").glob("shard-*.h5")} == set(store.shards)


def test_seek_auto_is_fast_where_frames_are_sparse_exact_where_dense_and_the_store_says_which(clip, tmp_path):
    rows = [{"id": "v", "video": str(clip), "sha256": "s"}]
    small = {"type": "frames", "size": [16, 16]}
    views = views_from_params(
        {
            "views": {
                "sparse": {**small, "num_frames": 4},  # 0.5 s apart: auto is fast
                "sparse_exact": {**small, "num_frames": 4, "seek": "exact"},
                "dense": {**small, "num_frames": None, "fps": 25, "max_seconds": 1},  # every frame: exact
                "dense_exact": {**small, "num_frames": None, "fps": 25, "max_seconds": 1, "seek": "exact"},
            }
        }
    )
    run_decode(rows, views, tmp_path, settings=Settings(workers=0))
    stores = {name: StoreReader(tmp_path / name) for name in views}
    assert stores["sparse"].text("seek") == ["fast"] and stores["dense"].text("seek") == ["exact"]
    assert "seek" not in stores["sparse_exact"].info_names()  # a fixed mode needs no per-video record
    np.testing.assert_array_equal(stores["dense"].get("v")[0], stores["dense_exact"].get("v")[0])

    meta = media.probe(str(clip))
    real = meta.frame_times - meta.frame_times[0]
    times, exact_times = stores["sparse"].get("v")[1], stores["sparse_exact"].get("v")[1]
    assert np.abs(times - exact_times).max() <= 0.1 + 1e-6  # max_shift
    assert all(np.isclose(real, t, atol=1e-4).any() for t in times)  # the stored time is the frame's own


@pytest.mark.parametrize("size", ["64x36", "36x64"])  # landscape, portrait
def test_multi_crop_clips_are_each_clip_cut_along_the_long_side_segment_by_segment(tmp_path, size):
    video = make_video(tmp_path / "v.mp4", seconds=2, size=size, audio=False)
    rows = [{"id": "v", "video": str(video), "sha256": "x"}]
    clips = {"type": "clips", "num_clips": 2, "clip_len": 3, "fps": None, "size": [24, 24]}
    views = views_from_params({"views": {"one": clips, "three": {**clips, "crops": 3}}})
    run_decode(rows, views, tmp_path / "out", workers=0)
    (one, one_times), (three, three_times) = (StoreReader(tmp_path / "out" / name).get("v") for name in views)
    assert one.shape == (2, 3, 24, 24, 3) and three.shape == (6, 3, 24, 24, 3)
    np.testing.assert_array_equal(three_times, np.repeat(one_times, 3))
    start, centre, end = three[0::3], three[1::3], three[2::3]
    # the centre crop is the single-crop view's (ffmpeg's crop filter may place it a pixel apart)
    assert np.abs(centre.astype(int) - one.astype(int)).mean() < 12
    assert (
        np.abs(start.astype(int) - centre.astype(int)).mean() > 20 < np.abs(end.astype(int) - centre.astype(int)).mean()
    )
    # the crops lie along the long side: 24 px of the 42.7 px it scales to, from either end
    with media.MediaFile(str(video), 60.0) as source:
        first_frame = views["three"].plan(source.probe())[0][0, 0]
        cover = source.frames(np.array([first_frame]), (24, 24), media.COVER)[0][0]
    long_axis = 1 if size == "64x36" else 0
    assert cover.shape[long_axis] > 24 == cover.shape[1 - long_axis]
    first = StoreReader(tmp_path / "out" / "three").get("v")[0][0, 0]
    expected = cover[:, :24] if long_axis == 1 else cover[:24, :]
    np.testing.assert_array_equal(first, expected)
