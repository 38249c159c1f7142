"""`python -m extract run`: decode and extract in one process gives the store the two stages give."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_video, save_torchvision

from extract.__main__ import main
from extract.backbones import BackboneConfig, VideoInput, register_backbone
from extract.backbones.image import ImageBackbone
from extract.core.cli import EXIT_ERROR, EXIT_OK, EXIT_VIDEOS_FAILED
from extract.core.settings import Settings
from extract.media.views import FramesView
from extract.ondemand import oneshot
from extract.stages.decode import decode_video, run_decode, views_from_params
from extract.stages.features import run_features
from extract.stages.manifest import read_prepared
from extract.store import StoreReader
from heads.predict import InputMaker

THREADS_SEEN: list[int] = []


class ThreadCountingBackbone(ImageBackbone):
    """ResNet18 that notes how many torch threads prepared each video's inputs."""

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        super().__init__(dataclasses.replace(config, model="resnet18"), device)

    def units(self, video: VideoInput):
        THREADS_SEEN.append(torch.get_num_threads())
        return super().units(video)


register_backbone("thread_counting", ThreadCountingBackbone, config_cls=BackboneConfig, about="test: counts threads")


def run_in(root, *args: str) -> int:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return main(list(args))
    finally:
        os.chdir(cwd)


@pytest.fixture
def videos(tmp_path):
    make_video(tmp_path / "clips" / "a.mp4", seconds=2, gop=50)
    make_video(tmp_path / "clips" / "b.mp4", seconds=1, audio=False)
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"not a video at all")
    return ["clips/a.mp4", "clips/b.mp4", "clips/broken.mp4"]


def test_run_the_two_stages_and_predicts_inputs_give_the_same_rows(tmp_path, videos, weights_dir, capsys):
    """The three ways into features: `run`, `decode` then `features`, and the stores `heads predict` makes
    for new videos from a head's recorded recipe."""
    weights = str(save_torchvision(weights_dir, "resnet18"))
    flags = ["--weights", weights, "--frames", "3", "--seek", "fast", "--dtype", "float32", "--out", "out"]
    assert run_in(tmp_path, "run", "resnet18", *videos, *flags) == EXIT_VIDEOS_FAILED
    assert "resnet18: out/resnet18 written: 2 extracted, 0 reused, 1 failed" in capsys.readouterr().out
    one_shot = StoreReader(tmp_path / "out" / "resnet18")
    assert one_shot.ids == ["clips/a", "clips/b"] and one_shot.failures["clips/broken"].startswith("probe: ")

    # the same settings through the two stages, in another folder
    rows = read_prepared(tmp_path / "out" / "manifest.csv")
    view = {"type": "frames", "num_frames": 3, "max_seconds": None, "seek": "fast"}
    run_decode(rows, views_from_params({"views": {"frames": view}}), tmp_path / "decoded", workers=0)
    config = {
        "model": "resnet18",
        "input": str(tmp_path / "decoded" / "frames"),
        "weights": weights,
        "dtype": "float32",
    }
    run_features("resnet18", config, tmp_path / "staged", loader_workers=0, device=torch.device("cpu"))
    staged = StoreReader(tmp_path / "staged")
    assert staged.failures["clips/broken"].startswith("no input (")  # the stage reads the decode's failure
    for vid in one_shot.ids:
        np.testing.assert_allclose(one_shot.get(vid)[0], staged.get(vid)[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(one_shot.get(vid)[1], staged.get(vid)[1])
    assert one_shot.attrs["config"] == staged.attrs["config"]  # one recipe: heads read either store
    assert json.loads(one_shot.attrs["recipe"])["input"]["view"]["seek"] == "fast"

    # predict: from the recipe alone (weights found by their sha256 in params), into its own folder
    recipe = staged.recipe
    maker = InputMaker(rows, tmp_path / "predict", {"resnet18": {"weights": weights}}, Settings(workers=0))
    maker.plan_views(recipe)
    maker.decode()
    predicted = StoreReader(maker.make(recipe))
    assert predicted.ids == one_shot.ids and predicted.attrs["config"] == staged.attrs["config"]
    for vid in one_shot.ids:
        np.testing.assert_allclose(predicted.get(vid)[0], staged.get(vid)[0], rtol=1e-5, atol=1e-5)

    # again into the same folder: the file and settings are unchanged, so nothing runs, and the store
    # keeps how the model ran when it did (the features stage's rule too), not this run's batch size
    ran_with = StoreReader(tmp_path / "out" / "resnet18").attrs["batch_size"]
    assert run_in(tmp_path, "run", "resnet18", *videos, *flags, "--allow-failures", "--batch-size", "1") == EXIT_OK
    assert "0 extracted, 2 reused, 1 failed" in capsys.readouterr().out
    assert StoreReader(tmp_path / "out" / "resnet18").attrs["batch_size"] == ran_with != 1
    # another recipe: the videos the folder holds are decoded once the recipe says they cannot be reused
    flags[flags.index("float32")] = "float16"
    assert run_in(tmp_path, "run", "resnet18", *videos, *flags, "--allow-failures") == EXIT_OK
    assert "2 extracted, 0 reused, 1 failed" in capsys.readouterr().out
    assert StoreReader(tmp_path / "out" / "resnet18").get("clips/a")[0].dtype == np.float16


def test_one_shot_audio_backbone_reads_16khz_audio(tmp_path, videos, vggish_folder, capsys):
    flags = ["--weights", str(vggish_folder), "--out", "out", "--allow-failures"]
    assert run_in(tmp_path, "run", "vggish", "clips/a.mp4", "clips/b.mp4", *flags) == EXIT_OK
    store = StoreReader(tmp_path / "out" / "vggish")
    assert store.get("clips/a")[0].shape == (2, 128) and store.get("clips/b")[0].shape == (0, 128)  # b: no audio


@pytest.mark.parametrize(
    "args, message",
    [
        (["resnet18", "--out", "o"], "name video files, or give a table with --manifest"),
        (["resnet18", "x.mp4", "--manifest", "m.csv", "--out", "o"], "not both"),
        (["resnet18", "x.mp4", "--seek", "keyframes", "--clips", "2", "--out", "o", "--precision", "fp8"], "fp8"),
        (["r2plus1d_18", "x.mp4", "--seek", "keyframes", "--out", "o"], "keyframes would fill a clip"),
    ],
)
def test_one_shot_usage_errors_are_one_line(tmp_path, capsys, args, message):
    assert run_in(tmp_path, "run", *args) == EXIT_ERROR
    assert message in capsys.readouterr().err


def test_one_shot_text_backbone_reads_the_tables_column(tmp_path, videos, bert_folder, capsys):
    (tmp_path / "m.csv").write_text('video,text\nclips/a.mp4,a cat on a mat\nclips/b.mp4,"rain, then sun"\n')
    flags = ["--manifest", "m.csv", "--weights", str(bert_folder), "--out", "out"]
    assert run_in(tmp_path, "run", "bert", *flags) == EXIT_OK
    store = StoreReader(tmp_path / "out" / "bert")
    assert store.ids == ["clips/a", "clips/b"] and store.get("clips/a")[0].shape[0] == 1
    assert json.loads(store.attrs["recipe"])["input"] == {"column": "text"}


DECODED_BY_THE_BUILD: list[bool] = []


class DecodeWatchingBackbone(ImageBackbone):
    """ResNet18 that, while it is being built, waits for `run` to have decoded every video."""

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        markers = [Path(MARKERS) / f"{video}.decoded" for video in ("a.mp4", "b.mp4")]
        deadline = time.monotonic() + 60
        while not all(m.exists() for m in markers) and time.monotonic() < deadline:
            time.sleep(0.05)
        DECODED_BY_THE_BUILD.append(all(m.exists() for m in markers))
        super().__init__(dataclasses.replace(config, model="resnet18"), device)


register_backbone("decode_watching", DecodeWatchingBackbone, config_cls=BackboneConfig, about="test: waits")


def decode_and_mark(task):
    """The decode stage's `decode_video`, then a marker file in MARKERS (which the backbone waits for)."""
    result = decode_video(task)
    (Path(MARKERS) / f"{Path(task.path).name}.decoded").touch()
    return result


MARKERS = ""  # a test's folder, set before the decoders fork


def test_videos_are_decoded_while_the_model_is_built(tmp_path, videos, weights_dir, monkeypatch):
    """Start-up hidden: the decoders start before the backbone is built (and torchvision imported)."""
    global MARKERS
    weights = save_torchvision(weights_dir, "resnet18")
    MARKERS = str(tmp_path)
    monkeypatch.setattr(oneshot, "decode_video", decode_and_mark)
    rows = [{"id": v, "video": str(tmp_path / v), "sha256": f"sha-{v}"} for v in videos[:2]]
    DECODED_BY_THE_BUILD.clear()
    summary = oneshot.run_one_shot(
        "decode_watching",
        {"weights": str(weights), "dtype": "float32"},
        rows,
        FramesView(num_frames=3, max_seconds=None),
        tmp_path / "out",
        device=torch.device("cpu"),
        workers=2,
    )
    assert DECODED_BY_THE_BUILD == [True] and summary.computed == 2


def test_beside_a_gpu_inputs_are_prepared_on_one_thread_while_every_core_decodes(
    tmp_path, videos, weights_dir, monkeypatch
):
    """With decoders on every core, torch ops on many threads each wait for a core (5.1 against 15.9
    videos/s on the H200 machine); the plan a GPU gets is forced here, on the CPU."""
    monkeypatch.setattr(oneshot, "decode_plan", lambda device: (1, None))
    torch.set_num_threads(2)
    rows = [{"id": v, "video": str(tmp_path / v), "sha256": f"sha-{v}"} for v in videos[:2]]
    view = FramesView(num_frames=3, max_seconds=None)
    values = {"weights": str(save_torchvision(weights_dir, "resnet18")), "dtype": "float32"}
    THREADS_SEEN.clear()
    summary = oneshot.run_one_shot(
        "thread_counting", values, rows, view, tmp_path / "out", device=torch.device("cpu"), workers=2
    )
    assert summary.computed == 2 and THREADS_SEEN == [1, 1]
    assert torch.get_num_threads() == 2  # put back afterwards


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("transcibe=false", "error: run whisper: unknown key(s) ['transcibe']; valid keys are"),
        ("transcribe=maybe", "error: run whisper.transcribe: 'maybe' is not true or false"),
        ("transcribe", "error: run --set 'transcribe': write KEY=VALUE, e.g. --set transcribe=false"),
        ("weights=x", "error: run --set weights: give it with --weights instead"),
        ("model=clip", "error: run --set model: name the backbone as run's first argument instead"),
    ],
)
def test_a_wrong_backbone_option_is_one_line_naming_it(tmp_path, clip, capsys, option, message):
    code = main(["run", "whisper", str(clip), "--out", str(tmp_path / "out"), "--set", option])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_ERROR and err.startswith(message) and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "whisper").exists()
