"""Decoding against slow references made by other programs: every frame decoded and resized by the
ffmpeg command (a separate process, the system's FFmpeg, as reelfeat decoded before it read files in
process), and ffmpeg's own resampling."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ffmpeg, make_video

from extract import media
from extract.media import bitstream
from extract.media.probe import _skippable
from extract.media.views import ClipsView, FramesView

RESIZE_FILTERS = {  # as reelfeat's ffmpeg commands spelled them: what in-process frames must equal
    "crop": "scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h},setsar=1",
    "pad": "scale={w}:{h}:force_original_aspect_ratio=decrease:flags=bicubic,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1",
    "stretch": "scale={w}:{h}:flags=bicubic,setsar=1",
}


@functools.lru_cache(maxsize=4)  # real clips are checked in several modes against one reference
def full_decode(path: Path, size: tuple[int, int], resize: str) -> tuple[np.ndarray, np.ndarray]:
    """Every frame in presentation order, decoded and resized in one pass by the ffmpeg command, and the
    decoder's own time of each frame from the first (NaN where it has none: frames flushed at the end of
    a stream without presentation times)."""
    height, width = size
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0"]
    cmd += ["-vf", RESIZE_FILTERS[resize].format(w=width, h=height), "-fps_mode", "passthrough"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    frames = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.uint8)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=best_effort_timestamp_time",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        check=True,
    )
    times = np.array([float(f.get("best_effort_timestamp_time", "nan")) for f in json.loads(probe.stdout)["frames"]])
    return frames.reshape(-1, *size, 3), times - times[0]


def assert_matches_full_decode(path: Path, view: FramesView | ClipsView) -> None:
    """Each sampled frame is the reference's frame with that number, and its stored time is that frame's time."""
    meta = media.probe(path)
    index, _ = view.plan(meta)
    got, _ = media.decode_frames(path, meta, index.ravel(), view.size, view.resize)
    reference, times = full_decode(path, view.size, view.resize)
    assert len(reference) == len(meta.frame_times)
    np.testing.assert_array_equal(got, reference[index.ravel()])
    stored = meta.frame_times[index.ravel()] - meta.frame_times[0]  # what FramesView.plan stores
    known = ~np.isnan(times[index.ravel()])
    np.testing.assert_allclose(stored[known], times[index.ravel()][known], atol=1e-4)


VIEWS = [
    FramesView(num_frames=7, max_seconds=None, size=(32, 40), resize="crop"),
    FramesView(num_frames=None, fps=3, max_seconds=1.5, size=(24, 24), resize="pad"),
    ClipsView(num_clips=2, clip_len=4, fps=10, max_seconds=None, size=(16, 20), resize="stretch"),
]
VIEW_IDS = ["uniform", "fixed-fps", "clips"]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("h264_bframes.mp4", {"gop": 10}),
        ("h264_long_gop.mp4", {"gop": 250, "seconds": 4}),
        ("mpeg4.avi", {"codec": "mpeg4", "gop": 15}),
        ("vp9.webm", {"codec": "libvpx-vp9", "gop": 8, "extra": ("-deadline", "realtime", "-cpu-used", "8")}),
        ("odd_rate.mkv", {"rate": 23, "gop": 7}),
    ],
)
@pytest.mark.parametrize("view", VIEWS, ids=VIEW_IDS)
def test_sampled_frames_equal_full_decode(tmp_path, name, kwargs, view):
    assert_matches_full_decode(make_video(tmp_path / name, audio=False, **kwargs), view)


def lavfi_clip(path: Path, *output: str, seconds: float = 4, rate: int = 25, vf: str = "") -> Path:
    source = f"testsrc2=size=96x64:rate={rate}:duration={seconds}" + (f",{vf}" if vf else "")
    ffmpeg("-f", "lavfi", "-i", source, "-pix_fmt", "yuv420p", *output, str(path))
    return path


def edit_list(tmp_path: Path) -> Path:
    """An MP4 cut by stream copy at a time between keyframes: its edit list hides the frames before the cut."""
    whole = lavfi_clip(tmp_path / "whole.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "25")
    ffmpeg("-ss", "0.5", "-i", str(whole), "-c", "copy", str(tmp_path / "edit_list.mp4"))
    return tmp_path / "edit_list.mp4"


EDGE_CASES = {
    # H.264 with B-frames in AVI, as NTU RGB+D, UCF101 and HMDB51 ship: packets carry decode times only
    "avi_bframes": lambda d: lavfi_clip(d / "avi_bframes.avi", "-c:v", "libx264", "-bf", "3", "-g", "40"),
    "open_gop": lambda d: lavfi_clip(
        d / "open_gop.mp4",
        "-c:v",
        "libx264",
        "-bf",
        "3",
        "-x264-params",
        "open-gop=1:keyint=30:min-keyint=30:scenecut=0",
    ),
    "edit_list": edit_list,
    "variable_rate": lambda d: lavfi_clip(
        d / "vfr.mp4",
        *("-c:v", "libx264", "-bf", "2", "-g", "20", "-fps_mode", "vfr"),
        rate=30,
        vf="setpts='N/30/TB+if(gte(N,30),0.3/TB,0)+if(gte(N,60),0.5/TB,0)'",
    ),
    "shorter_than_a_sample_spacing": lambda d: lavfi_clip(d / "short.mp4", "-c:v", "libx264", seconds=0.12),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("view", VIEWS, ids=VIEW_IDS)
def test_awkward_streams_equal_full_decode(tmp_path, case, view):
    path = EDGE_CASES[case](tmp_path)
    if case == "avi_bframes":
        assert not media.probe(path).seekable  # the case it stands for: no presentation times to seek by
    assert_matches_full_decode(path, view)


@pytest.mark.parametrize(
    "name",
    [
        "mmaction2_demo.mp4",
        "paddlevideo_example.avi",
        "decord_flipping_a_pancake.mkv",
        "bigbuckbunny.mp4",
        "bikes.mp4",
        "tiktok_talking.mp4",  # 2 keyframes in 13 s, 74% B-frames
        "tiktok_dance_hevc.mp4",  # HEVC 1080x1920 at 59.94 fps
    ],
)
def test_real_clips_equal_full_decode(shared_media, name):
    assert_matches_full_decode(shared_media / name, FramesView(num_frames=16, max_seconds=None, size=(64, 64)))


def tiktok_like(tmp_path: Path, preset: str = "medium", seconds: float = 12) -> Path:
    """Like a real TikTok: one keyframe in 10 s, three B-frames (a pyramid) between references. x264's
    `medium` lets P-frames reference the pyramid's B-frames (`ref=3`), `veryfast` does not (`ref=1`)."""
    x264 = "keyint=300:min-keyint=300:scenecut=0:b-pyramid=normal"
    return lavfi_clip(
        tmp_path / f"long_gop_{preset}.mp4",
        *("-c:v", "libx264", "-preset", preset, "-bf", "3", "-x264-params", x264),
        seconds=seconds,
        rate=30,
    )


def assert_nearby_frames(path: Path, seek: str, max_shift: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Frames from a `seek` mode are the reference's frames at the indices it reports, and those lie where
    the mode promises; returns (planned, found) indices."""
    meta = media.probe(path)
    view = FramesView(num_frames=10, max_seconds=None, size=(32, 32))
    planned, _ = view.plan(meta)
    got, found = media.decode_frames(path, meta, planned, view.size, view.resize, seek=seek, max_shift=max_shift)
    reference, times = full_decode(path, view.size, view.resize)
    np.testing.assert_array_equal(got, reference[found])
    shift = np.abs(meta.frame_times[found] - meta.frame_times[planned])
    if seek == "fast":
        assert shift.max() <= max_shift + 1e-6
    else:  # keyframes: the keyframe nearest to each planned frame
        assert set(meta.frame_times[found]) <= set(meta.keyframe_times)
        nearest = np.abs(meta.keyframe_times[None, :] - meta.frame_times[planned][:, None]).min(1)
        np.testing.assert_allclose(shift, nearest, atol=1e-6)
    stored = view.timestamps(meta, found)  # real times of the frames found, as decode stores them
    np.testing.assert_allclose(stored, times[found], atol=1e-4)
    return planned, found


@pytest.mark.parametrize("seek", ["fast", "keyframes"])
def test_seek_modes_give_real_frames_near_the_planned_ones(tmp_path, seek):
    planned, found = assert_nearby_frames(tiktok_like(tmp_path), seek)
    assert (planned != found).any()  # the case it stands for: frames really moved


def test_fast_seek_without_a_reference_frame_near_enough_decodes_exactly(tmp_path):
    planned, found = assert_nearby_frames(tiktok_like(tmp_path), "fast", max_shift=0.0)
    np.testing.assert_array_equal(planned, found)


def test_fast_seek_on_a_stream_whose_b_frames_nothing_references_takes_i_and_p_frames(tmp_path):
    path = tiktok_like(tmp_path, "veryfast")
    meta = media.probe(path)
    assert meta.skip == "BIDIR"
    planned, found = assert_nearby_frames(path, "fast", max_shift=0.1)  # equal to the reference's frames
    assert meta.chain[found].all() and not meta.chain[planned].all()  # moved off B-frames onto I- and P-frames


def decoded_with(path: Path, skip: str) -> dict[int, np.ndarray]:
    """Every frame FFmpeg's decoder gives at skip_frame level `skip`, by presentation timestamp."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = skip
        return {frame.pts: frame.to_ndarray(format="gray") for frame in container.decode(stream)}


@pytest.mark.parametrize("preset, skip", [("veryfast", "BIDIR"), ("medium", "NONREF")])
def test_b_frames_are_skipped_only_where_no_p_frame_references_them(tmp_path, preset, skip):
    """The probe's choice holds against the decoder itself: where it keeps B-frames, skipping them
    would break the P-frames that reference them; where it skips them, every kept frame is exact."""
    path = tiktok_like(tmp_path, preset, seconds=4)
    assert media.probe(path).skip == skip
    full, without_b = decoded_with(path, "DEFAULT"), decoded_with(path, "BIDIR")
    broken = [pts for pts, frame in without_b.items() if not np.array_equal(frame, full[pts])]
    assert (len(broken) == 0) == (skip == "BIDIR"), len(broken)
    kept = decoded_with(path, skip)
    assert all(np.array_equal(frame, full[pts]) for pts, frame in kept.items())


def test_real_tiktoks_p_frames_reference_b_frames(shared_media):
    """tiktok_talking's encoder lets P-frames reference B-frames: the probe keeps them, rightly."""
    path = shared_media / "tiktok_talking.mp4"
    assert media.probe(path).skip == "NONREF"
    full, without_b = decoded_with(path, "DEFAULT"), decoded_with(path, "BIDIR")
    assert sum(not np.array_equal(frame, full[pts]) for pts, frame in without_b.items()) > len(without_b) // 2


def test_hevc_non_reference_pictures_are_skipped_only_on_the_top_sub_layer():
    """A sub-layer non-reference picture may be referenced by pictures of higher temporal sub-layers."""
    kind, reader = bitstream.PacketKind, bitstream.NalReader("hevc", None)
    top = [kind(True, "", 0), kind(False, "", 1), kind(True, "", 0), kind(False, "", 1)]
    skip, chain = _skippable(reader, top, b"")
    assert skip == "NONREF" and chain.tolist() == [True, False, True, False]
    below = [kind(True, "", 0), kind(False, "", 0), kind(True, "", 1)]
    assert _skippable(reader, below, b"") == ("DEFAULT", None)


@pytest.mark.parametrize("seek", ["fast", "keyframes"])
@pytest.mark.parametrize(
    "name",
    ["tiktok_talking.mp4", "tiktok_dance_hevc.mp4", "paddlevideo_example.avi", "bikes.mp4", "mmaction2_demo.mp4"],
)
def test_seek_modes_on_real_clips(shared_media, name, seek):
    """Frames `fast` and `keyframes` give are the very frames a full decode gives at their timestamps
    (equal bytes, so any PSNR bound holds)."""
    assert_nearby_frames(shared_media / name, seek)


def test_probe_reports_streams_and_frames(clip):
    with media.MediaFile(clip, 60) as source:
        meta, info = source.probe(), source.info()
    assert meta.has_video and meta.has_audio
    assert len(meta.frame_times) == 50 and meta.fps == pytest.approx(25)
    assert meta.duration == pytest.approx(2.0, abs=0.05)
    assert (info["width"], info["height"], info["rotation"]) == (64, 48, 0)
    np.testing.assert_allclose(meta.keyframe_times, [0.0, 0.48, 0.96, 1.44, 1.92], atol=1e-3)


def ffprobe_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frame and keyframe times as the ffprobe command prints them, from the packets."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-of", "json"]
    packets = json.loads(subprocess.run([*cmd, str(path)], capture_output=True, check=True).stdout)["packets"]
    shown = [p for p in packets if "D" not in p["flags"]]
    times = np.unique([float(p["pts_time"]) for p in shown])
    return times, np.unique([float(p["pts_time"]) for p in shown if "K" in p["flags"]])


@pytest.mark.parametrize("name", ["tiktok_talking.mp4", "tiktok_dance_hevc.mp4", "paddlevideo_example.avi"])
def test_probe_times_are_ffprobes_to_the_microsecond(shared_media, name):
    meta = media.probe(shared_media / name)
    times, keys = ffprobe_frames(shared_media / name)
    np.testing.assert_array_equal(meta.frame_times, times)  # rows made by the ffprobe-era probe keep their times
    np.testing.assert_array_equal(meta.keyframe_times, keys)


def test_phone_rotation_is_honoured(tmp_path):
    plain = make_video(tmp_path / "plain.mp4", size="64x48", audio=False, seconds=1)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    with media.MediaFile(rotated, 60) as source:
        info = source.info()  # no frame decoded yet: the rotation comes from the first one
        assert info["rotation"] in (90, 270) and (info["width"], info["height"]) == (48, 64)
        meta = source.probe()
    view = FramesView(num_frames=3, max_seconds=None, size=(64, 48), resize="stretch")
    upright = media.decode_frames(rotated, meta, view.plan(meta)[0], view.size, view.resize)[0].astype(int)
    flat_meta = media.probe(plain)
    flat = media.decode_frames(plain, flat_meta, view.plan(flat_meta)[0], (48, 64), "stretch")[0].astype(int)
    turned = [np.abs(upright - np.rot90(flat, k, axes=(1, 2))).mean() for k in (1, -1)]
    assert min(turned) < 3 < max(turned), turned  # one quarter turn matches, the other does not
    reference, _ = full_decode(rotated, (64, 48), "stretch")  # the ffmpeg command turns it the same way
    np.testing.assert_array_equal(upright, reference[view.plan(meta)[0]])


def test_seek_runs_split_only_at_keyframes():
    times = np.arange(100) / 10.0
    keys = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    runs = media.seek_segments(times, keys, np.array([5, 15, 25, 45, 46, 90]))
    assert [run.tolist() for run in runs] == [[5, 15], [25], [45, 46], [90]]


def ffmpeg_mono_16k(path: Path) -> np.ndarray:
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-f",
        "f32le",
        "pipe:",
    ]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.float32)


# FFmpeg's resampler in PyAV's wheel (FFmpeg 8) and the system's command (Debian's 5.1) round a few
# samples differently in the last bit of float32
AUDIO_ATOL = 1e-6


def test_audio_equals_ffmpeg_resampling(clip):
    samples = media.decode_audio(clip, 16000, None)
    np.testing.assert_allclose(samples, ffmpeg_mono_16k(clip), atol=AUDIO_ATOL, rtol=0)
    assert len(samples) == pytest.approx(32000, abs=1200)
    assert np.abs(samples).max() > 0.1  # the tone is there
    assert len(media.decode_audio(clip, 16000, 0.5)) == 8000


@pytest.mark.parametrize("name", ["paddlevideo_example.avi", "decord_flipping_a_pancake.mkv", "bigbuckbunny.mp4"])
def test_real_audio_equals_ffmpeg_resampling(shared_media, name):
    samples = media.decode_audio(shared_media / name, 16000, None)
    np.testing.assert_allclose(samples, ffmpeg_mono_16k(shared_media / name), atol=AUDIO_ATOL, rtol=0)


def test_audio_behind_an_edit_list_keeps_its_first_samples(shared_media):
    """The TikTok's HE-AAC track starts 0.16 s before its edit list's start, as decoder priming: Debian's
    ffmpeg 5.1 command drops 0.16 s too many (13.05 s of a 13.19 s track); FFmpeg 8's decoder keeps the
    track's length and gives the command's samples 0.16 s later, to the decoders' own differences."""
    path = shared_media / "tiktok_talking.mp4"
    samples, command = media.decode_audio(path, 16000, None), ffmpeg_mono_16k(path)
    with av.open(str(path)) as container:
        track = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
    assert abs(len(samples) / 16000 - track) < 0.05 < abs(len(command) / 16000 - track)
    shifted = samples[len(samples) - len(command) :]
    assert np.abs(shifted - command).mean() < 0.05 * np.abs(command).mean()


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "file not found"),
        (b"", "empty file"),
        (b"this is a caption, not a video\n" * 20, "FFmpeg cannot read it: moov atom not found"),
    ],
    ids=["missing", "zero-byte", "text-named-mp4"],
)
def test_unreadable_files_raise_one_line_reasons(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(media.MediaError, match=reason) as info:
        media.probe(path)
    assert "\n" not in str(info.value)


def test_slow_decoding_is_stopped_by_the_time_limit(clip):
    meta = media.probe(clip)
    with pytest.raises(media.MediaError, match="reading the video took longer than 0.001 s"):
        media.decode_frames(clip, meta, np.array([3]), (16, 16), "crop", timeout=0.001)
