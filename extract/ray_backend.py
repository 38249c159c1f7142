"""The Ray backend: decoding as Ray tasks, each backbone as a pool of actors; the driver stays the
only writer of every store, through the same `StoreBuilder` as the local backend, so the stores
are the same whichever backend made them.

Chosen by `REELFEAT_BACKEND=ray` or `--backend ray` (never a tracked param, so switching does not
make DVC rerun anything). `RAY_ADDRESS` selects a cluster; without it a local instance starts.
On a cluster, the videos and `data/` must be on storage every node sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

BACKENDS = ("local", "ray")
RETRIES = 3  # a task whose worker died is run again this many times; then its video is recorded as failed


def backend_name(flag: str | None = None) -> str:
    name = flag or os.environ.get("REELFEAT_BACKEND", "local")
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r}: choose one of {list(BACKENDS)} (REELFEAT_BACKEND or --backend)")
    return name


def ray_module():
    """Ray, started or joined once per process."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install -r requirements-ray.txt") from None
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return ray


def decode_results(tasks: list, workers: int) -> Iterator[tuple[str, dict]]:
    """`decode_video` on every task as Ray tasks, at most 2 x workers in flight; results as they finish."""
    from extract.decode import decode_video

    ray = ray_module()
    remote = ray.remote(num_cpus=1, max_retries=RETRIES)(decode_video)
    pending = iter(tasks)
    running = {}
    for task in pending:
        running[remote.remote(task)] = task
        if len(running) >= 2 * workers:
            yield from _finished(ray, running)
    while running:
        yield from _finished(ray, running)


def _finished(ray, running: dict) -> Iterator[tuple[str, dict]]:
    done, _ = ray.wait(list(running), num_returns=1)
    for ref in done:
        task = running.pop(ref)
        try:
            yield ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died RETRIES + 1 times on this video
            reason = f"lost its Ray worker {RETRIES + 1} times: {type(exc).__name__}"
            yield task.vid, {name: reason for name in task.views}


class _BackboneWorker:
    """One backbone on one Ray worker: reads its inputs from the source store and runs whole batches."""

    def __init__(self, key: str, values: dict, device: str, batch_size: int) -> None:
        import torch  # here, not at the top: decoding imports this module and must stay free of torch

        from extract.backbones import backbone_config
        from extract.features import open_source

        torch.set_num_threads(max(1, int(ray_module().get_runtime_context().get_assigned_resources().get("CPU", 1))))
        entry, config = backbone_config(key, values)
        self.source = open_source(config)
        self.backbone = entry.build(config, torch.device(device))
        self.batch_size = batch_size

    def run(self, ids: list[str]) -> list[tuple[str, object]]:
        from extract.features import _batches, _Prepared

        prepared = _Prepared(self.source, ids, self.backbone)
        return list(_batches((prepared[i] for i in range(len(ids))), self.backbone, self.batch_size))


def extract_results(
    key: str, values: dict, ids: list[str], batch_size: int, videos_per_call: int = 8
) -> Iterator[tuple[str, object]]:
    """Rows of each video from a pool of backbone actors: one per GPU where there are GPUs, else one per 2 CPUs."""
    ray = ray_module()
    from ray.util import ActorPool

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = int(os.environ.get("REELFEAT_RAY_ACTORS", 0)) or gpus or max(1, cpus // 2)
    options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": max(1, cpus // actors)}
    worker = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES, **options)(_BackboneWorker)
    device = "cuda" if gpus else "cpu"
    pool = ActorPool([worker.remote(key, values, device, batch_size) for _ in range(actors)])
    chunks = [ids[i : i + videos_per_call] for i in range(0, len(ids), videos_per_call)]
    for results in pool.map_unordered(lambda actor, chunk: actor.run.remote(chunk), chunks):
        yield from results
