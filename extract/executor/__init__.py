"""Where per-video work and model work run: this machine's processes, or a Ray cluster.

The stages call `make_executor(...)` and hand it work (see `base.py`); it imports no stage.
"""

from __future__ import annotations

import os

from extract.errors import UserError
from extract.executor.base import RETRIES, WORKER_DIED, Executor, ModelRunner, ModelWork
from extract.executor.local import LocalExecutor

BACKENDS = ("local", "ray")

__all__ = [
    "BACKENDS",
    "RETRIES",
    "WORKER_DIED",
    "Executor",
    "ModelRunner",
    "ModelWork",
    "backend_name",
    "make_executor",
]


def backend_name(flag: str | None = None) -> str:
    """`--backend`, else REELFEAT_BACKEND, else local."""
    name = flag or os.environ.get("REELFEAT_BACKEND", "local")
    if name not in BACKENDS:
        raise UserError(f"backend {name!r}: choose one of {list(BACKENDS)} (REELFEAT_BACKEND or --backend)")
    return name


def make_executor(backend: str | None, workers: int) -> Executor:
    """The executor of `backend` (see `backend_name`) with `workers` processes (0: this process)."""
    if backend_name(backend) == "ray":
        from extract.executor.ray_cluster import RayExecutor  # Ray only where it is asked for

        return RayExecutor(workers)
    return LocalExecutor(workers)
