"""The Ray backend on a local 2-CPU Ray instance: the same stores as the local backend, and a worker
killed mid-run costs nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import assert_same_rows, make_video

from extract.core.settings import Settings
from extract.executor.local import pool_map
from extract.stages.decode import run_decode, views_from_params
from extract.stages.features import run_features
from extract.store import StoreReader

ray = pytest.importorskip("ray")
VIEWS = views_from_params(
    {"views": {"frames": {"type": "frames", "num_frames": 3, "size": [32, 32]}, "audio": {"type": "audio"}}}
)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[dict[str, str]]:
    root = tmp_path_factory.mktemp("ray")
    rows = [
        {"id": f"v{i}", "video": str(make_video(root / f"v{i}.mp4", seconds=1.5, audio=i % 2 == 0)), "sha256": f"s{i}"}
        for i in range(12)
    ]
    (root / "broken.mp4").write_text("not a video")
    return [*rows, {"id": "broken", "video": str(root / "broken.mp4"), "sha256": "b"}]


def parent_pid(_: object) -> int:
    return os.getppid()


def test_ray_decode_writes_the_same_stores_as_local(local_ray, clips, tmp_path):
    # a local pool beside Ray: forking one there once hung in CI (a job sent, never received), so its
    # workers start from a forkserver, not from this process
    assert os.getpid() not in {pid for _, pid in pool_map(parent_pid, [0, 1, 2], workers=2)}
    local = run_decode(clips, VIEWS, tmp_path / "local", workers=2, backend="local")
    remote = run_decode(clips, VIEWS, tmp_path / "ray", workers=2, backend="ray")
    for name in VIEWS:
        assert_same_rows(StoreReader(tmp_path / "local" / name), StoreReader(tmp_path / "ray" / name))
        assert "FFmpeg cannot read it" in remote[name].failures["broken"] == local[name].failures["broken"]


def test_ray_extract_writes_the_same_store_as_local(local_ray, clips, tmp_path):
    run_decode(clips, VIEWS, tmp_path / "decoded", workers=0)
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    config = {
        "model": "resnet18",
        "input": str(tmp_path / "decoded" / "frames"),
        "weights": str(weights),
        "dtype": "float32",
    }
    run_features("r18", config, tmp_path / "local", backend="local", batch_size=8)
    run_features("r18", config, tmp_path / "ray", backend="ray", batch_size=8)
    local, remote = StoreReader(tmp_path / "local"), StoreReader(tmp_path / "ray")
    assert_same_rows(remote, local, rtol=1e-4, atol=1e-5)
    assert remote.attrs == local.attrs and remote.failures == local.failures


def _kill_first_decode_worker(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first Ray worker seen decoding a video (its process title names the task)."""
    while not stop.is_set() and not killed:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::decode_video"):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.002)


def test_a_worker_killed_mid_decode_is_retried_and_nothing_is_lost(local_ray, clips, tmp_path):
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_decode_worker, args=(stop, killed))
    killer.start()
    try:
        summaries = run_decode(clips, VIEWS, tmp_path / "decoded", workers=2, backend="ray")
    finally:
        stop.set()
        killer.join()
    assert killed, "no decoding worker was seen to kill"
    frames = StoreReader(tmp_path / "decoded" / "frames")
    assert frames.ids == [f"v{i}" for i in range(12)]  # every video, in manifest order, none twice
    assert list(summaries["frames"].failures) == ["broken"]


def test_on_ray_the_workers_decide_device_precision_and_batch_and_the_store_says_so(local_ray, clips, tmp_path):
    """A driver that would pick CUDA (REELFEAT_DEVICE=cuda on a GPU driver) over CPU workers: the store
    records what the workers used, not what the driver would have."""
    from extract.backbones import compute_dtype
    from extract.stages.features import CPU_BATCH

    run_decode(clips, VIEWS, tmp_path / "decoded", workers=0)
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    config = {"model": "resnet18", "input": str(tmp_path / "decoded" / "frames"), "weights": str(weights)}
    summary = run_features("r18", config, tmp_path / "ray", backend="ray", device=torch.device("cuda"))
    assert summary.computed == len(StoreReader(tmp_path / "decoded" / "frames").ids)
    attrs = StoreReader(tmp_path / "ray").attrs
    worker_precision = str(compute_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    assert (attrs["device"], attrs["precision"], attrs["batch_size"]) == ("cpu", worker_precision, CPU_BATCH["frames"])

    # a rerun that computes nothing keeps what the workers recorded
    run_features("r18", config, tmp_path / "ray", backend="ray", device=torch.device("cuda"))
    assert StoreReader(tmp_path / "ray").attrs == attrs


def test_run_on_ray_sends_decoding_and_the_model_to_the_actors_and_makes_the_local_store(local_ray, clips, tmp_path):
    from extract.backbones import compute_dtype
    from extract.media.views import FramesView
    from extract.ondemand.oneshot import run_one_shot
    from extract.stages.features import CPU_BATCH

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    values = {"model": "resnet18", "weights": str(weights), "dtype": "float32"}
    view = FramesView(num_frames=3)
    local = run_one_shot("resnet18", values, clips, view, tmp_path / "local", settings=Settings(workers=0))
    remote = run_one_shot("resnet18", values, clips, view, tmp_path / "ray", settings=Settings(backend="ray"))
    assert (remote.computed, remote.failures) == (local.computed, local.failures) == (12, remote.failures)
    assert remote.failures["broken"].startswith("probe: FFmpeg cannot read it")
    ours, theirs = StoreReader(tmp_path / "ray/resnet18"), StoreReader(tmp_path / "local/resnet18")
    assert_same_rows(ours, theirs, rtol=1e-4, atol=1e-5)
    assert ours.attrs["config"] == theirs.attrs["config"]
    worker_precision = str(compute_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    assert (ours.attrs["device"], ours.attrs["precision"], ours.attrs["batch_size"]) == (
        "cpu",
        worker_precision,
        CPU_BATCH["frames"],
    )
