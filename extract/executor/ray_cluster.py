"""The Ray executor: per-video work as Ray tasks, model work on a pool of actors.

Chosen by `REELFEAT_BACKEND=ray` or `--backend ray` (a setting, never a tracked param, so switching does
not make DVC rerun anything). `RAY_ADDRESS` selects a cluster; without it a local instance starts.
On a cluster, the videos and `data/` must be on storage every node sees. The stage process stays
the only writer of every store, so the stores are the same whichever backend made them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from extract.core.errors import Failure, UserError
from extract.executor.base import RETRIES, WORKER_DIED, Executor, ModelWork, call, merged

T = TypeVar("T")
R = TypeVar("R")
ITEMS_PER_CALL = 8  # items per actor call: enough to fill a batch, few to redo when an actor dies


def ray_module(address: str | None = None):
    """Ray, started or joined (at `address`, else a local instance) once per process."""
    try:
        import ray
    except ImportError:
        raise UserError("the ray backend needs Ray: pip install -r requirements-ray.txt") from None
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return ray


class _ModelActor:
    """One model on one Ray worker, fed whole chunks of items."""

    def __init__(self, work: ModelWork, threads: int) -> None:
        work.init_worker(threads)
        self.runner = work.open()

    def run(self, items: list[str]) -> tuple[list[tuple[str, Any]], dict[str, str | int]]:
        """The items' results, and how the model ran here (device, precision and batch size are this
        node's: the driver may have neither this node's GPU nor its CPU)."""
        results = list(self.runner.run((item, call(self.runner.prepare, item)) for item in items))
        return results, self.runner.provenance()


class RayExecutor(Executor):
    name = "ray"
    remote = True

    def __init__(self, workers: int, address: str | None = None, actors: int | None = None) -> None:
        self.ray = ray_module(address)
        self.workers = max(1, workers)
        self.actors = actors
        self.model_provenance = {}

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], limit_s: float | None = None
    ) -> Iterator[tuple[T, R | Failure]]:
        """Tasks, at most 2 x workers in flight; Ray starts a task again on a new worker when its worker died.
        `limit_s` is not enforced here: a task's start is not seen from the driver, only `fn`'s own
        time checks hold."""
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=RETRIES)(call).options(name=getattr(fn, "__name__", "work"))
        running: dict[Any, T] = {}
        for item in items:
            running[remote.remote(fn, item)] = item
            if len(running) >= 2 * self.workers:
                yield from self._finished(running)
        while running:
            yield from self._finished(running)

    def _finished(self, running: dict) -> Iterator[tuple[Any, Any]]:
        ray = self.ray
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            item = running.pop(ref)
            try:
                yield item, ray.get(ref)
            except ray.exceptions.RayTaskError:
                raise  # `call` turns every exception of the work into a Failure: this is a bug here
            except ray.exceptions.RayError:  # its worker died on every try
                yield item, Failure(WORKER_DIED)

    def map_model(self, work: ModelWork, items: Sequence[str]) -> Iterator[tuple[str, Any]]:
        """A pool of actors, one per GPU where the cluster has GPUs, else one per 2 CPUs (or `actors`).

        An actor that dies is replaced by a new one (calls to it wait until it has loaded its model;
        calls to an actor Ray is restarting fail at once); the items of the call it was running run
        again one per call, so an item that kills its actor twice is recorded and the others are
        kept. Each actor holds one call at a time, so a death is always that call's.
        """
        ray = self.ray
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        count = self.actors or gpus or max(1, cpus // 2)
        # an actor lives on one node: it can hold no more CPUs than the largest node has
        node_cpus = max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]), default=1)
        threads = 1 if gpus else max(1, min(cpus // count, node_cpus))
        options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": threads}
        actor_cls = ray.remote(max_restarts=0, max_task_retries=0, **options)(_ModelActor)
        work = work.on_device("cuda" if gpus else "cpu")
        actors = [actor_cls.remote(work, threads) for _ in range(count)]
        idle = deque(range(count))
        chunks = deque(list(items[i : i + ITEMS_PER_CALL]) for i in range(0, len(items), ITEMS_PER_CALL))
        deaths: Counter[str] = Counter()
        running: dict[Any, tuple[int, list[str]]] = {}
        reports: list[dict[str, str | int]] = []
        try:
            while chunks or running:
                while chunks and idle:
                    slot, chunk = idle.popleft(), chunks.popleft()
                    running[actors[slot].run.remote(chunk)] = (slot, chunk)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    slot, chunk = running.pop(ref)
                    idle.append(slot)
                    try:
                        results, report = ray.get(ref)
                    except ray.exceptions.RayTaskError:
                        raise  # the runner turns every exception of an item into a Failure: this is a bug here
                    except ray.exceptions.RayError:  # the actor died during this call
                        ray.kill(actors[slot])
                        actors[slot] = actor_cls.remote(work, threads)
                        for item in chunk:
                            deaths[item] += 1
                            if deaths[item] > RETRIES:
                                yield item, Failure(WORKER_DIED)
                            else:
                                chunks.appendleft([item])
                        continue
                    if report not in reports:
                        reports.append(report)
                        self.model_provenance = merged(reports)
                    yield from results
        finally:
            for actor in actors:
                ray.kill(actor)
