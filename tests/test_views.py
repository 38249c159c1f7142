"""Sampling plans: which frames each view takes, and what params it accepts."""

from __future__ import annotations

import numpy as np
import pytest

from extract.core.config import ConfigError
from extract.media import Probe
from extract.media.views import AudioView, ClipsView, FramesView, view_config_json, view_from_params


def fake_probe(frames: int, fps: float = 10.0, start: float = 0.0) -> Probe:
    times = start + np.arange(frames) / fps
    return Probe(frames / fps, True, False, fps, times, times[::10])


def test_uniform_frames_cover_the_first_seconds_only():
    index, times = FramesView(num_frames=4, max_seconds=2.0).plan(fake_probe(600))  # a 60 s video
    assert index.tolist() == [2, 7, 12, 17]  # centres of four 0.5 s slices of the first 2 s
    np.testing.assert_allclose(times, [0.2, 0.7, 1.2, 1.7], atol=1e-6)


def test_video_shorter_than_max_seconds_is_sampled_over_its_length():
    index, _ = FramesView(num_frames=5, max_seconds=10.0).plan(fake_probe(10))  # 1 s long
    assert index.tolist() == [1, 3, 5, 7, 9]


def test_one_frame_video_repeats_its_frame():
    index, times = FramesView(num_frames=3).plan(fake_probe(1))
    assert index.tolist() == [0, 0, 0] and times.tolist() == [0, 0, 0]


def test_timestamps_count_from_the_first_frame():
    _, times = FramesView(num_frames=2, max_seconds=None).plan(fake_probe(20, start=1.5))
    np.testing.assert_allclose(times, [0.5, 1.5], atol=1e-6)


def test_fixed_fps_sampling_is_capped():
    view = FramesView(num_frames=None, fps=2.0, max_seconds=None, max_frames=7)
    index, times = view.plan(fake_probe(100))  # 10 s
    assert len(index) == 7 and index.tolist() == [0, 5, 10, 15, 20, 25, 30]


def test_clips_are_consecutive_frames_at_their_rate():
    index, centres = ClipsView(num_clips=2, clip_len=4, fps=5.0, max_seconds=None).plan(fake_probe(100))
    assert index.shape == (2, 4)
    assert np.diff(index, axis=1).tolist() == [[2, 2, 2], [2, 2, 2]]  # 10 fps source, 5 fps clips
    np.testing.assert_allclose(centres, [2.4, 7.4], atol=1e-6)  # midpoints of frames 2.1..2.7 and 7.1..7.7


def test_clip_without_fps_spreads_over_the_span_like_the_dads_seed():
    index, _ = ClipsView(num_clips=1, clip_len=16, fps=None, max_seconds=10.0).plan(fake_probe(300, fps=30))
    assert index.shape == (1, 16) and index[0, 0] < 20 and index[0, -1] > 270


@pytest.mark.parametrize(
    "params, message",
    [
        ({"type": "frame"}, "type 'frame' is not one of"),
        ({"type": "frames", "num_frame": 3}, r"unknown key\(s\) \['num_frame'\]"),
        ({"type": "frames", "fps": 2}, "exactly one of num_frames and fps"),
        ({"type": "frames", "resize": "squash"}, "resize 'squash' is not one of"),
        ({"type": "clips", "size": [112]}, r"views\.v\.size: \[112\] needs 2 values"),
        ({"type": "frames", "num_frames": "ten"}, "num_frames: .ten. is not an integer or null"),
        ({"type": "frames", "seek": "nearest"}, "seek 'nearest' is not one of"),
        ({"type": "clips", "seek": "keyframes"}, "keyframes would fill a clip with one frame"),
        ({"type": "clips", "seek": "auto"}, "auto is for frames views"),
        ({"type": "frames", "seek": "fast", "max_shift": -1}, "max_shift must be 0 or more"),
        (
            {"type": "clips", "crops": 3, "resize": "pad"},
            "crops: 3; at least 1, and more than 1 only with resize: crop",
        ),
        ({"type": "clips", "crops": 0}, "crops: 0; at least 1"),
    ],
)
def test_bad_view_params_name_the_key(params, message):
    with pytest.raises(ConfigError, match=message) as info:
        view_from_params("v", params)
    assert "decode.views.v" in str(info.value)


def test_crops_enter_the_reuse_key_only_where_there_are_several():
    assert view_config_json(ClipsView(crops=1)) == view_config_json(ClipsView())
    assert '"crops": 1' not in view_config_json(ClipsView()) and '"crops": 3' in view_config_json(ClipsView(crops=3))


def test_view_params_round_trip():
    view = view_from_params("a", {"type": "audio", "sample_rate": 8000})
    assert view == AudioView(sample_rate=8000)


def test_seek_settings_enter_the_reuse_key_only_where_they_change_rows():
    exact = view_config_json(FramesView(seek="exact"))
    assert "seek" not in exact and "max_shift" not in exact  # stores made before seek modes keep their key
    assert view_config_json(FramesView(seek="exact", max_shift=1.0)) == exact
    auto = view_config_json(FramesView())  # the default: the rule is the key, not what a video resolved to
    assert '"seek": "auto"' in auto and auto != view_config_json(FramesView(max_shift=0.3))
    fast = view_config_json(FramesView(seek="fast"))
    assert fast != exact and fast != view_config_json(FramesView(seek="fast", max_shift=0.3))
    assert "max_shift" not in view_config_json(FramesView(seek="keyframes", max_shift=1.0))


def test_seek_auto_takes_keyframes_where_each_planned_frame_has_its_own_within_max_shift():
    meta = fake_probe(300)  # 30 s at 10 fps, a keyframe every second
    index, _ = FramesView(num_frames=3, max_seconds=None).plan(meta)  # at 5, 15 and 25 s: keyframes
    assert FramesView().seek_for(meta, index) == "keyframes"
    index, _ = FramesView(num_frames=100, max_seconds=None).plan(meta)  # 0.3 s apart: keyframes shared
    assert FramesView().seek_for(meta, index) == "fast"
    index = np.array([55, 145, 255])  # 0.5 s from the nearest keyframe
    assert FramesView().seek_for(meta, index) == "fast"
    assert FramesView(max_shift=0.5).seek_for(meta, index) == "keyframes"
