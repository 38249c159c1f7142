"""Nothing stops a run: each per-video step made to fail for one video, on both backends, records that
video with its step and keeps the others; a killed extract resumes; stage processes stay free of torch."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import ROOT, assert_same_rows, make_video, save_torchvision

from extract.backbones import BackboneConfig, VideoInput, register_backbone
from extract.backbones.image import ImageBackbone
from extract.core.errors import Failure
from extract.executor import WORKER_DIED
from extract.stages import decode
from extract.stages.decode import run_decode, views_from_params
from extract.stages.features import ExtractRunner, Source, run_features
from extract.store import StoreReader, StoreWriter


class FragileBackbone(ImageBackbone):
    """ResNet18 that breaks on marked videos, one step each."""

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        super().__init__(dataclasses.replace(config, model="resnet18"), device)

    def units(self, video: VideoInput):
        if video.vid == "bad-units":
            raise ValueError("cannot prepare this one")
        if video.vid == "bad-kill":
            os.kill(os.getpid(), signal.SIGKILL)  # a segfault or an out-of-memory kill, as the worker sees it
        return super().units(video)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        planes = batch.flatten(2)  # (B, channels, pixels)
        if bool((planes.amax(2) == planes.amin(2)).all(1).any()):  # the video whose frames are one flat colour
            raise RuntimeError("flat frame in the batch")
        return super().embed(batch)

    def assemble(self, video, outputs, units):
        if video.vid == "bad-assemble":
            raise KeyError("no such column")
        return super().assemble(video, outputs, units)


register_backbone("fragile", FragileBackbone, config_cls=BackboneConfig, about="test: breaks on marked videos")


class SmallCardBackbone(ImageBackbone):
    """ResNet18 on a card that holds two inputs: a bigger batch raises CUDA's out-of-memory error."""

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        super().__init__(dataclasses.replace(config, model="resnet18"), device)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(batch)} GiB")
        return super().embed(batch)


register_backbone("small_card", SmallCardBackbone, config_cls=BackboneConfig, about="test: 2 inputs fit")

GOOD = [f"ok{i}" for i in range(7)]
EXPECTED = {
    "bad-units": "preparing inputs: ValueError: cannot prepare this one",
    "bad-forward": "forward pass: RuntimeError: flat frame in the batch",
    "bad-assemble": "assembling rows: KeyError: 'no such column'",
    "bad-kill": WORKER_DIED,
    "bad-decode": "no input (FRAMES: decode: ffprobe failed: moov atom not found)",
}


@pytest.fixture(scope="module")
def frames_store(tmp_path_factory) -> Path:
    """A decoded frames store: good videos around each marked one, and one that failed decoding."""
    path = tmp_path_factory.mktemp("fragile") / "frames"
    rng = np.random.default_rng(0)
    view = {"view": {"type": "frames", "num_frames": 3, "size": [32, 32]}}
    with StoreWriter(
        path, row_shape=(32, 32, 3), dtype=np.uint8, attrs={"kind": "frames", "config": json.dumps(view)}
    ) as w:
        for vid in [
            "ok0",
            "bad-units",
            "ok1",
            "bad-forward",
            "ok2",
            "ok3",
            "bad-assemble",
            "ok4",
            "bad-kill",
            "ok5",
            "ok6",
        ]:
            frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
            if vid == "bad-forward":
                frames[:] = 200
            w.add(vid, frames, np.arange(3, dtype=np.float32), f"sha-{vid}")
        w.add_failure("bad-decode", "decode: ffprobe failed: moov atom not found")
    return path


def fragile_config(frames_store: Path, weights_dir: Path) -> dict:
    weights = save_torchvision(weights_dir, "resnet18")
    # float32: rows are compared with a run whose batches split differently (bfloat16 would round apart)
    config = {"model": "fragile", "input": str(frames_store), "weights": str(weights), "dtype": "float32"}
    return {**config, "precision": "float32"}


@pytest.fixture
def local_ray():
    """Ray for one test: the tests after it fork local pools, which beside Ray work another way."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # FragileBackbone travels to the actors
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_each_failing_step_fails_only_its_video_on_both_backends(request, backend, frames_store, weights_dir, tmp_path):
    if backend == "ray":
        request.getfixturevalue("local_ray")
    config = fragile_config(frames_store, weights_dir)
    # batch 4: the flat video shares batches with good ones, which must survive the split
    summary = run_features("fragile", config, tmp_path / "f", loader_workers=2, batch_size=4, backend=backend)
    expected = {vid: reason.replace("FRAMES", str(frames_store)) for vid, reason in EXPECTED.items()}
    assert summary.failures == expected
    store = StoreReader(tmp_path / "f")
    assert store.ids == GOOD and store.failures == expected

    plain = {**config, "model": "resnet18"}  # the same model without the traps, on the good videos alone
    run_features("resnet18", plain, tmp_path / "plain", loader_workers=0, batch_size=4)
    reference = StoreReader(tmp_path / "plain")
    for vid in GOOD:
        np.testing.assert_allclose(store.get(vid)[0], reference.get(vid)[0], rtol=1e-4, atol=1e-4)


def test_reading_the_input_is_a_step_of_its_own(frames_store, weights_dir):
    weights = str(save_torchvision(weights_dir, "resnet18"))
    backbone = FragileBackbone(
        BackboneConfig(model="fragile", input=str(frames_store), weights=weights), torch.device("cpu")
    )

    def read(vid: str) -> VideoInput:
        raise OSError(f"can't read data (corrupt chunk of {vid})")

    runner = ExtractRunner(backbone, Source(frames_store, "frames", ["v"], ["s"], {}, read=read), batch_size=2)
    from extract.executor.base import call

    assert call(runner.prepare, "v") == Failure("reading the input: OSError: can't read data (corrupt chunk of v)")


def test_transcription_failure_is_recorded_with_its_step(tmp_path, whisper_file, monkeypatch):
    import whisper.model

    def transcribe(model, audio, **kwargs):
        if len(audio) == 31 * 16000:
            raise RuntimeError("decoder ran out of memory")
        return {"text": " hello", "segments": [], "language": "en"}

    monkeypatch.setattr(whisper.model.Whisper, "transcribe", transcribe)
    audio = tmp_path / "audio"
    view = {"view": {"type": "audio", "sample_rate": 16000}}
    with StoreWriter(audio, row_shape=(), dtype=np.float32, attrs={"kind": "audio", "config": json.dumps(view)}) as w:
        # over 30 s each: such audio is transcribed by `transcribe` (shorter is decoded in a batch)
        for vid, n in [("fine", 32 * 16000), ("breaks", 31 * 16000)]:
            w.add(vid, np.zeros(n, np.float32) + 0.01, np.arange(n, dtype=np.float32) / 16000, f"sha-{vid}")
    config = {"model": "whisper", "input": str(audio), "weights": str(whisper_file)}
    summary = run_features("whisper", config, tmp_path / "w", loader_workers=0)
    assert summary.failures == {"breaks": "transcription: RuntimeError: decoder ran out of memory"}
    assert StoreReader(tmp_path / "w").text("transcript") == ["hello"]


def test_a_decode_worker_killed_on_one_video_records_it_and_keeps_the_rest(tmp_path, monkeypatch):
    original = decode._decode_view

    def dies_on_doomed(source, view, on_device=None):
        if source.path.stem == "doomed":
            os.kill(os.getpid(), signal.SIGKILL)
        return original(source, view, on_device)

    monkeypatch.setattr(decode, "_decode_view", dies_on_doomed)  # the forked workers inherit it
    rows = [
        {"id": vid, "video": str(make_video(tmp_path / f"{vid}.mp4", seconds=0.5, size="32x32")), "sha256": vid}
        for vid in ["a", "doomed", "b", "c"]
    ]
    views = views_from_params(
        {"views": {"frames": {"type": "frames", "num_frames": 2, "size": [16, 16]}, "audio": {"type": "audio"}}}
    )
    summaries = run_decode(rows, views, tmp_path / "out", workers=2)
    for name in views:
        assert summaries[name].failures == {"doomed": WORKER_DIED}
        assert StoreReader(tmp_path / "out" / f"{name}").ids == ["a", "b", "c"]


def test_kill_9_mid_extract_then_rerun_gives_the_clean_run_store(tmp_path, weights_dir):
    rng = np.random.default_rng(1)
    source = tmp_path / "frames"
    view = {"view": {"type": "frames", "num_frames": 2, "size": [32, 32]}}
    ids = [f"v{i:02d}" for i in range(16)]
    with StoreWriter(
        source, row_shape=(32, 32, 3), dtype=np.uint8, attrs={"kind": "frames", "config": json.dumps(view)}
    ) as w:
        for vid in ids:
            w.add(vid, rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), np.arange(2, dtype=np.float32), vid)
    weights = save_torchvision(weights_dir, "resnet18")
    backbone = {"input": str(source), "weights": str(weights), "dtype": "float32", "precision": "float32"}
    (tmp_path / "params.yaml").write_text(json.dumps({"backbones": {"resnet18": backbone}}))
    clean = tmp_path / "clean"
    run_features("resnet18", backbone, clean, loader_workers=0, batch_size=2)

    out = tmp_path / "features" / "resnet18"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REELFEAT_CHECKPOINT_S": "0"}
    command = [sys.executable, "-m", "extract", "features", "resnet18", "--out", str(out), "--batch-size", "2"]
    for kill in range(2):  # twice: the second run resumes from the first one's checkpoints, then dies too
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(list(out.glob("shard-*.h5"))) < 3 * (kill + 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "index.json").exists()  # no store until one run finishes; its shards are whole
    saved = sum(len(h5py.File(p)["ids"]) for p in out.glob("shard-*.h5"))
    assert 6 <= saved < len(ids)

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(ids) - saved} extracted, {saved} reused, 0 failed" in rerun.stdout
    store, reference = StoreReader(out), StoreReader(clean)
    assert store.ids == ids
    assert_same_rows(store, reference, rtol=1e-5, atol=1e-5)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no temp files left
    assert {p.name for p in out.glob("shard-*.h5")} == set(store.shards)  # and no shard nothing needs


@pytest.mark.parametrize("command", ["prepare", "decode", "info"])
def test_stage_processes_that_run_no_model_never_import_torch(tmp_path, command):
    make_video(tmp_path / "v.mp4", seconds=0.5, size="32x32")
    (tmp_path / "manifest.csv").write_text("video\nv.mp4\n")
    params = {"prepare": {"manifest": "manifest.csv"}, "decode": {"views": {"audio": {"type": "audio"}}}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    steps = {"prepare": ["prepare"], "decode": ["prepare", "decode"], "info": ["prepare", "decode", "info"]}[command]
    for name in steps:
        args = ["info", "data/decoded/audio"] if name == "info" else [name]
        check = (
            "import sys; from extract.__main__ import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
        )
        done = subprocess.run(
            [sys.executable, "-c", check, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def test_the_cli_gives_user_errors_one_line_and_bugs_their_traceback(tmp_path, capsys):
    import argparse

    from extract.__main__ import main
    from extract.core.cli import EXIT_ERROR, run_command

    assert main(["--params", str(tmp_path / "none.yaml"), "decode"]) == EXIT_ERROR
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'none.yaml'}: params file not found; run from the project root or pass --params"
    )

    def bug(args: argparse.Namespace) -> int:
        return {}["a key nobody set"]

    with pytest.raises(KeyError):  # not turned into "error: ..." and exit 1
        run_command(argparse.Namespace(run=bug))


def test_a_bug_at_a_step_is_logged_each_time_and_a_command_shows_its_traceback_once(caplog, capsys):
    from extract.core.cli import command_logging
    from extract.core.errors import failure_of

    def bug() -> Failure:
        try:
            {}["a key nobody set"]
        except KeyError as exc:
            return failure_of("assemble rows", exc)

    assert bug().reason == "assemble rows: KeyError: 'a key nobody set'"
    bug()  # a notebook meeting the same bug twice is told twice, with its traceback
    logged = [r for r in caplog.records if r.name == "extract.core.errors"]
    assert len(logged) == 2 and all(r.exc_info for r in logged)
    capsys.readouterr()

    with command_logging():  # a command shows each traceback once; every failure keeps its line
        bug(), bug(), bug()
    said = capsys.readouterr().err
    assert said.count("warning: unexpected KeyError at step 'assemble rows' (recorded for the video)") == 3
    assert said.count("Traceback (most recent call last)") == 1
    with command_logging():  # the next command starts afresh
        bug()
    assert capsys.readouterr().err.count("Traceback (most recent call last)") == 1


def test_damaged_metadata_counts_as_absent():
    from extract.media.pyav import display_rotation

    assert display_rotation(float("nan")) == 0  # a display matrix that is no rotation (all zeros)
    assert display_rotation(-90.0) == 270 and display_rotation(90.4) == 90


def test_out_of_gpu_memory_halves_the_batch_for_the_rest_of_the_run(frames_store, weights_dir, tmp_path, caplog):
    config = {**fragile_config(frames_store, weights_dir), "model": "small_card"}
    good = [vid for vid in GOOD if vid.startswith("ok")]
    source = StoreReader(frames_store)
    small = tmp_path / "frames"
    with StoreWriter(small, row_shape=source.row_shape, dtype=np.uint8, attrs=dict(source.attrs)) as writer:
        for vid in good:
            writer.add(vid, *source.get(vid), f"sha-{vid}")
    config["input"] = str(small)
    summary = run_features("small_card", config, tmp_path / "f", loader_workers=0, batch_size=8)
    assert summary.failures == {} and summary.computed == len(good)
    assert StoreReader(tmp_path / "f").attrs["batch_size"] == 2  # what worked, for the next run to start from
    said = caplog.text
    assert "at a batch of 8; going on with batches of 4" in said
    assert "at a batch of 4; going on with batches of 2" in said

    run_features("resnet18", {**config, "model": "resnet18"}, tmp_path / "plain", loader_workers=0, batch_size=2)
    assert StoreReader(tmp_path / "plain").attrs["batch_size"] == 2
    assert_same_rows(StoreReader(tmp_path / "f"), StoreReader(tmp_path / "plain"), rtol=1e-4, atol=1e-4)


def test_a_stage_where_every_video_failed_exits_non_zero_even_with_allow_failures(tmp_path, monkeypatch, capsys):
    from extract.__main__ import main
    from extract.core.cli import EXIT_OK, EXIT_VIDEOS_FAILED

    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mp4").write_bytes(b"not a video " * 10)
    (tmp_path / "m.csv").write_text("video\na.mp4\nb.mp4\nc.mp4\n")
    (tmp_path / "params.yaml").write_text(
        "prepare:\n  manifest: m.csv\ndecode:\n  views:\n    frames: {type: frames, num_frames: 2, size: [16, 16]}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["prepare"]) == EXIT_OK
    capsys.readouterr()
    assert main(["decode", "--allow-failures"]) == EXIT_VIDEOS_FAILED
    said = capsys.readouterr().err.splitlines()
    assert said == ["error: every video failed in frames: nothing was made (see the reasons above)"]

    make_video(tmp_path / "b.mp4", seconds=1)  # one good video: partial failure is what the flag allows
    assert main(["prepare"]) == EXIT_OK
    assert main(["decode", "--allow-failures"]) == EXIT_OK


def test_a_full_disk_is_one_line_naming_the_store_and_a_rerun_completes(tmp_path, monkeypatch, capsys):
    from extract.__main__ import main
    from extract.core.cli import EXIT_ERROR, EXIT_OK

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("needs root to mount a 1 MB tmpfs")
    try:
        for i in range(3):
            make_video(tmp_path / f"v{i}.mp4", seconds=1)
        (tmp_path / "m.csv").write_text("video\nv0.mp4\nv1.mp4\nv2.mp4\n")
        view = "{type: frames, num_frames: 8, size: [128, 128]}"  # 393 KB a video: the third does not fit
        (tmp_path / "params.yaml").write_text(f"prepare:\n  manifest: m.csv\ndecode:\n  views:\n    frames: {view}\n")
        monkeypatch.chdir(tmp_path)
        assert main(["prepare"]) == EXIT_OK
        assert main(["decode", "--out", str(small / "decoded"), "--workers", "0"]) == EXIT_ERROR
        said = capsys.readouterr().err.splitlines()
        assert len(said) == 1 and said[0].startswith(f"error: no space left on the device writing {small}/decoded/")
        assert "free some space and run it again" in said[0]
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert main(["decode", "--out", str(small / "decoded"), "--workers", "0"]) == EXIT_OK  # on the bigger disk
    assert StoreReader(small / "decoded" / "frames").ids == ["v0", "v1", "v2"]
