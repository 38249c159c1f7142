"""Where per-video work and model work run: this machine's processes, or a Ray cluster.

The stages call `make_executor(...)` and hand it work (see `base.py`); it imports no stage.
"""

from __future__ import annotations

from extract.core.settings import BACKENDS, Settings
from extract.executor.base import RETRIES, WORKER_DIED, Executor, ModelRunner, ModelWork
from extract.executor.local import LocalExecutor, thread_map

__all__ = [
    "BACKENDS",
    "RETRIES",
    "WORKER_DIED",
    "Executor",
    "ModelRunner",
    "ModelWork",
    "make_executor",
    "thread_map",
]


def make_executor(settings: Settings, workers: int) -> Executor:
    """The executor of `settings.backend` with `workers` processes (0: this process)."""
    if settings.backend == "ray":
        from extract.executor.ray_cluster import RayExecutor  # Ray only where it is asked for

        return RayExecutor(workers, settings.ray_address, settings.ray_actors)
    return LocalExecutor(workers)
