"""NVDEC decoding for `run` (extract.media.nvdec), checked on the CPU: torchcodec's CPU device runs the
same code as its CUDA device, so the plans, the frames, the resizing on a torch device, the choice
of decoder, the fallback to the CPU decoders and what the store records are all covered here. On a
GPU, bench/gpu.py checks NVDEC's rows against the CPU's (cosine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ffmpeg, make_video, save_torchvision

from extract import media
from extract.backbones import VideoInput, backbone_config
from extract.core.config import ConfigError
from extract.core.settings import Settings
from extract.executor import thread_map
from extract.media.nvdec import DeviceDecoder, NvdecRefused, refusal
from extract.media.views import ClipsView, FramesView
from extract.ondemand import oneshot
from extract.stages.decode import DecodeJob, decode_video
from extract.stages.features import ExtractWork, decoded_in_run
from extract.store import StoreReader

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A clip with B-frames, the same turned 90 degrees by its display matrix, and two NVDEC refuses.
    Big enough that resizing's edges (where torch's and swscale's kernels differ most) are a small part."""
    folder = tmp_path_factory.mktemp("nvdec")
    plain = make_video(folder / "plain.mp4", seconds=1, size="192x144", audio=False)
    turned = folder / "turned.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(turned))
    yuv444 = make_video(folder / "yuv444.mp4", seconds=1, audio=False, extra=("-pix_fmt", "yuv444p"))
    mjpeg = make_video(folder / "mjpeg.avi", seconds=1, audio=False, codec="mjpeg", extra=("-pix_fmt", "yuvj420p"))
    return {"plain": plain, "turned": turned, "yuv444": yuv444, "mjpeg": mjpeg}


@pytest.mark.parametrize("name", ["plain", "turned"])
def test_the_device_decoder_gives_the_frames_pyav_gives(files, name):
    """The same plan gives the same frames: byte for byte at the file's size (torchcodec is handed the
    probe's frame index and turns frames upright itself), and within resizing's differences at a
    model's size, for every resize mode and seek mode."""
    with media.MediaFile(files[name], 60) as source:
        meta = source.probe()
        wanted = np.linspace(0, len(meta.frame_times) - 1, 7).astype(int)
        upright = (source.info()["height"], source.info()["width"])
        for resize, size in [("stretch", upright), ("crop", (96, 96)), ("pad", (96, 120)), ("stretch", (72, 120))]:
            for seek in ("exact", "fast", "keyframes"):
                expected, found = source.frames(wanted, size, resize, seek)
                frames, on_device, by = DeviceDecoder(CPU).frames(source, wanted, size, resize, seek)
                assert isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8
                np.testing.assert_array_equal(on_device, found)
                got = frames.numpy().astype(int)
                if size == upright:
                    np.testing.assert_array_equal(got, expected)
                    continue
                # torch's antialiased bicubic against swscale's: a few levels apart on these sharp test
                # patterns (about 1 on real clips), and each frame nearest its own CPU frame
                apart = np.abs(got[:, None] - expected[None].astype(int)).mean(axis=(2, 3, 4))
                assert apart.diagonal().max() < 6, (resize, size, seek)
                assert (apart.argmin(axis=1) == np.arange(len(got))).all() or len(set(found)) < len(found)
        assert by == f"FFmpeg's software decoder through torchcodec {torch_codec_version()} on cpu"
        nothing, _, _ = DeviceDecoder(CPU).frames(source, np.zeros(0, int), (8, 8), "crop")
        assert tuple(nothing.shape) == source.frames(np.zeros(0, int), (8, 8), "crop")[0].shape == (0, 8, 8, 3)


def torch_codec_version() -> str:
    import torchcodec

    return torchcodec.__version__


def test_files_nvdec_refuses_are_named_before_any_decoding(files):
    reasons = {}
    for name in ("plain", "yuv444", "mjpeg"):
        with media.MediaFile(files[name], 60) as source:
            source.probe()
            reasons[name] = refusal(source)
    assert reasons == {
        "plain": None,
        "yuv444": "NVDEC does not decode h264 in yuv444p",
        "mjpeg": "NVDEC does not decode mjpeg",
    }
    with media.MediaFile(files["mjpeg"], 60) as source, pytest.raises(NvdecRefused, match="does not decode mjpeg"):
        DeviceDecoder(CPU).frames(source, np.arange(3), (32, 32), "crop")


def test_a_refused_file_is_decoded_on_the_cpu_and_says_why(files):
    """A video NVDEC refuses is never a failed video: the CPU decodes it, and its info says why."""
    views = {
        "frames": FramesView(num_frames=4, size=(32, 32)),
        "clips": ClipsView(num_clips=2, clip_len=2, size=(32, 32), crops=3),
    }
    for name, on_device in [("plain", True), ("turned", True), ("yuv444", False), ("mjpeg", False)]:
        moved = decode_video(DecodeJob(name, str(files[name]), views, 1, 60.0, device="cpu"))
        stayed = decode_video(DecodeJob(name, str(files[name]), views, 1, 60.0))
        for view in views:
            frames, times, info = moved[view]
            expected, expected_times, expected_info = stayed[view]
            np.testing.assert_array_equal(times, expected_times)
            assert tuple(frames.shape) == expected.shape
            assert {k: v for k, v in info.items() if k != "decoded_by"} == expected_info
            if on_device:
                assert isinstance(frames, torch.Tensor) and info["decoded_by"].startswith("FFmpeg's software")
            else:
                np.testing.assert_array_equal(frames, expected)
                assert info["decoded_by"].startswith(f"{media.decoder_version()} on the CPU: NVDEC does not decode")


def test_run_chooses_nvdec_only_beside_a_model_on_cuda():
    assert oneshot.frame_decoder("auto", CPU, "frames") is None
    assert oneshot.frame_decoder("cpu", torch.device("cuda"), "frames") is None
    assert oneshot.frame_decoder("nvdec", torch.device("cuda"), "audio") is None  # audio is the CPU's
    with pytest.raises(ConfigError, match=r"--decoder nvdec .* this model runs on cpu; give a CUDA --device"):
        oneshot.frame_decoder("nvdec", CPU, "frames")
    if not torch.cuda.is_available():
        assert oneshot.frame_decoder("auto", torch.device("cuda"), "clips") is None
        with pytest.raises(ConfigError, match=r"no CUDA GPU here \(torch.cuda.is_available\(\) is False\)"):
            oneshot.frame_decoder("nvdec", torch.device("cuda"), "frames")
    with pytest.raises(ConfigError, match=r"REELFEAT_DECODER: 'gpu' is not a decoder; choose one of"):
        Settings.from_environment({"REELFEAT_DECODER": "gpu"})
    assert Settings.from_environment({}).overridden(decoder="cpu").decoder == "cpu"


def test_frames_decoded_on_a_device_reach_the_model_there_and_give_the_cpus_rows(tmp_path, files, weights_dir):
    """`run`'s GPU path on the CPU device: threads of this process decode into tensors that the model's
    inputs are prepared from without a copy, and the rows match those of CPU-decoded frames (the
    GPU check asks for cosine 0.99); the store's provenance names what decoded each video."""
    weights = str(save_torchvision(weights_dir, "resnet18"))
    view = FramesView(num_frames=4, seek="fast")
    paths = {name: str(files[name]) for name in ("plain", "turned", "yuv444")}
    entry, config = backbone_config(
        "resnet18", {"model": "resnet18", "input": "(run)", "weights": weights, "dtype": "float32"}
    )
    source = decoded_in_run(view, list(paths), ["0" * 64] * len(paths))
    runner = ExtractWork(entry, config, "cpu", 8, source).open()

    def rows(device: str | None, notes: oneshot.DecoderNotes) -> dict[str, np.ndarray]:
        tasks = [DecodeJob(vid, path, {"view": view}, 1, 60.0, device=device) for vid, path in paths.items()]
        return {
            vid: out.feats
            for vid, out in runner.run(oneshot._inputs(runner, thread_map(decode_video, tasks, 2), notes))
        }

    notes = oneshot.DecoderNotes("cpu", previous={"gone": "a video no longer in the store", "plain": "an old note"})
    moved, stayed = rows("cpu", notes), rows(None, oneshot.DecoderNotes(None, {}))
    for vid in paths:
        a, b = moved[vid], stayed[vid]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.99, vid
    provenance = notes.provenance([*paths])
    assert provenance["decoder"].startswith("FFmpeg's software decoder through torchcodec")
    assert json.loads(provenance["decoder_notes"]) == {
        "yuv444": f"{media.decoder_version()} on the CPU: NVDEC does not decode h264 in yuv444p"
    }


def test_a_video_input_on_a_device_is_prepared_without_a_copy(weights_dir):
    frames = torch.randint(0, 255, (3, 40, 48, 3), dtype=torch.uint8)
    entry, config = backbone_config(
        "resnet18", {"model": "resnet18", "input": "(run)", "weights": str(save_torchvision(weights_dir, "resnet18"))}
    )
    backbone = entry.build(config, CPU)
    as_tensor = backbone.units(VideoInput("v", frames, np.zeros(3)))
    as_array = backbone.units(VideoInput("v", frames.numpy(), np.zeros(3)))
    for a, b in zip(as_tensor.items, as_array.items, strict=True):
        torch.testing.assert_close(a, b)
    assert VideoInput("v", frames).tensor() is frames


def test_run_records_its_decoder_and_refuses_nvdec_without_a_gpu(tmp_path, clip, weights_dir, capsys):
    from extract.__main__ import main

    weights = str(save_torchvision(weights_dir, "resnet18"))
    flags = ["--weights", weights, "--frames", "2", "--out", str(tmp_path / "out")]
    assert main(["run", "resnet18", str(clip), *flags]) == 0
    store = StoreReader(tmp_path / "out" / "resnet18")
    assert store.attrs["decoder"] == media.decoder_version() and "decoder_notes" not in store.attrs
    if not torch.cuda.is_available():
        assert main(["run", "resnet18", str(clip), *flags, "--decoder", "nvdec"]) != 0
        assert "--decoder nvdec (REELFEAT_DECODER) decodes on the GPU the model runs on" in capsys.readouterr().err
