"""The Ray backend on a cluster of two nodes on this machine (`ray start --head`, then `ray start
--address`), each with one CPU: the same stores as the local backend, and the provenance the
workers report. The driver is a child process given the cluster by the environment, as a user's
`RAY_ADDRESS=... REELFEAT_BACKEND=ray` command is (Ray reads its token settings once per process)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import ROOT, assert_same_rows, make_video

from extract.backbones import compute_dtype
from extract.core.settings import Settings
from extract.stages.decode import run_decode, views_from_params
from extract.stages.features import CPU_BATCH, run_features
from extract.store import StoreReader

ray = pytest.importorskip("ray")
PORT = 6397
VIEWS = {"frames": {"type": "frames", "num_frames": 3, "size": [32, 32]}}


@pytest.fixture(scope="module")
def two_nodes():
    """Two Ray nodes of one CPU each, and the environment a driver needs to join them. Ray 2.59+ asks
    every node and driver of a started cluster for a token: one is made for this cluster."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_DISABLE_USAGE_STATS": "1",
        "PYTHONPATH": str(ROOT),
    }
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    try:
        for command in (
            ["ray", "start", "--head", f"--port={PORT}", "--include-dashboard=false", *common],
            ["ray", "start", f"--address=127.0.0.1:{PORT}", *common],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=120, env=env)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{PORT}", "REELFEAT_BACKEND": "ray"}
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[dict[str, str]]:
    root = tmp_path_factory.mktemp("cluster")
    rows = [
        {"id": f"v{i}", "video": str(make_video(root / f"v{i}.mp4", seconds=1.0)), "sha256": f"s{i}"} for i in range(8)
    ]
    (root / "broken.mp4").write_text("not a video")
    return [*rows, {"id": "broken", "video": str(root / "broken.mp4"), "sha256": "b"}]


# The driver: decode and extract with the settings of its environment (the cluster), then report the nodes.
DRIVER = """
import json, sys
import ray, torch
from extract.stages.decode import run_decode, views_from_params
from extract.stages.features import run_features
from extract.core.settings import Settings

clips, views, config, out = json.loads(sys.argv[1])
settings = Settings.from_environment()
run_decode(clips, views_from_params({"views": views}), out + "/decoded", settings=settings.overridden(workers=2))
# one actor per node; this driver would pick CUDA, the workers have CPUs only
run_features("r18", config, out + "/features", device=torch.device("cuda"), settings=settings.overridden(ray_actors=2))
print(json.dumps(len([node for node in ray.nodes() if node["Alive"]])))
"""


def test_two_nodes_make_the_stores_the_local_backend_makes_and_record_what_the_workers_used(two_nodes, clips, tmp_path):
    run_decode(clips, views_from_params({"views": VIEWS}), tmp_path / "local", settings=Settings(workers=0))
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    config = {"model": "resnet18", "input": str(tmp_path / "local/frames"), "weights": str(weights), "dtype": "float32"}
    run_features("r18", config, tmp_path / "f_local", settings=Settings(loader_workers=0))

    argument = json.dumps([clips, VIEWS, config, str(tmp_path / "cluster")])
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, argument], capture_output=True, text=True, timeout=300, env=two_nodes
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "2"  # both nodes were up

    local_frames, cluster_frames = (
        StoreReader(tmp_path / "local/frames"),
        StoreReader(tmp_path / "cluster/decoded/frames"),
    )
    assert_same_rows(cluster_frames, local_frames)
    assert cluster_frames.attrs == local_frames.attrs
    local, cluster = StoreReader(tmp_path / "f_local"), StoreReader(tmp_path / "cluster/features")
    assert_same_rows(cluster, local, rtol=1e-4, atol=1e-5)
    worker_precision = str(compute_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    assert (cluster.attrs["device"], cluster.attrs["precision"]) == ("cpu", worker_precision)
    assert cluster.attrs["batch_size"] == CPU_BATCH["frames"] and cluster.attrs == local.attrs
