"""The executor on both backends: every item comes back once, a raising item is its own failure, and a
worker that dies on an item is replaced and the item retried once before it is recorded."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from extract.core.errors import Failure
from extract.core.settings import Settings
from extract.executor import WORKER_DIED, make_executor, thread_map


def shout(item: str) -> str:
    """The work: upper-case an item; `bad` raises, `doomed...` kills its worker, a path dies on first sight."""
    if item == "bad":
        raise ValueError("no shouting at bad")
    if item.startswith("doomed"):
        os.kill(os.getpid(), signal.SIGKILL)
    if item.startswith("/"):  # dies the first time only: the retry succeeds
        marker = Path(item)
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"
    return item.upper()


@dataclasses.dataclass
class ShoutWork:
    """Model work whose 'model' shouts: prepare in workers, run batches in the model process."""

    device: str = "cpu"

    def open(self) -> ShoutRunner:
        return ShoutRunner()

    def on_device(self, device: str) -> ShoutWork:
        return dataclasses.replace(self, device=device)

    def init_worker(self, threads: int) -> None:
        pass


class ShoutRunner:
    def prepare(self, item: str) -> str:
        return shout(item)

    def run(self, prepared: Iterable[tuple[str, object]]) -> Iterator[tuple[str, object]]:
        for item, value in prepared:
            yield item, value if isinstance(value, Failure) else f"{value}!"

    def provenance(self) -> dict[str, str | int]:
        return {"device": "cpu", "pid": os.getpid()}


@pytest.fixture(scope="module", params=["local", "ray"])
def backend(request) -> Iterator[str]:
    """Module-scoped, so pytest runs every local test first and then every Ray test, on one Ray
    started once: a local pool beside Ray works another way (`extract/executor/local.py`)."""
    if request.param == "local":
        yield "local"
        return
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield "ray"
    ray.shutdown()


ITEMS = ["a", "bad", "b", "doomed", "c", "d", "e"]


def test_map_gives_every_item_once_with_its_result_or_failure(backend):
    got = list(make_executor(Settings(backend=backend), 2).map(shout, ITEMS))
    assert sorted(item for item, _ in got) == sorted(ITEMS)
    results = dict(got)
    assert results["a"] == "A" and results["e"] == "E"
    assert results["bad"] == Failure("shout: ValueError: no shouting at bad")
    assert results["doomed"] == Failure(WORKER_DIED)


def test_a_worker_that_dies_once_is_replaced_and_the_item_retried(backend, tmp_path):
    marker = str(tmp_path / "first-try")
    assert dict(make_executor(Settings(backend=backend), 2).map(shout, ["a", marker, "b"])) == {
        "a": "A",
        marker: "survived",
        "b": "B",
    }


def test_map_model_gives_the_same_results_on_every_backend(backend):
    executor = make_executor(Settings(backend=backend), 2)
    got = list(executor.map_model(ShoutWork(), ITEMS))
    # how the model ran is reported by the process that ran it: this one locally, actors on Ray
    assert executor.model_provenance["device"] == "cpu"
    pids = str(executor.model_provenance["pid"]).split(",")
    assert (pids == [str(os.getpid())]) == (backend == "local")
    assert sorted(item for item, _ in got) == sorted(ITEMS)
    results = dict(got)
    assert results["a"] == "A!" and results["e"] == "E!"
    assert results["bad"] == Failure("prepare: ValueError: no shouting at bad")
    assert results["doomed"] == Failure(WORKER_DIED)


def touch(path: str) -> str:
    Path(path).touch()
    return path


def test_local_workers_start_on_the_call_before_any_result_is_read(tmp_path):
    """`run` builds its model between starting the decoders and reading them: they must work meanwhile."""
    paths = [str(tmp_path / name) for name in ("a", "b")]
    results = make_executor(Settings(), 2).map(touch, paths)
    deadline = time.monotonic() + 60
    while not all(Path(p).exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(Path(p).exists() for p in paths)  # no result has been asked for yet
    assert sorted(item for item, _ in results) == paths


def test_local_workers_zero_runs_in_this_process():
    results = dict(make_executor(Settings(), 0).map(shout, ["a", "bad"]))
    assert results == {"a": "A", "bad": Failure("shout: ValueError: no shouting at bad")}


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_local_worker_past_the_time_limit_is_killed_and_only_its_item_fails():
    """A call into FFmpeg that never returns cannot be stopped from inside the worker: the pool kills it."""
    results = dict(make_executor(Settings(), 2).map(nap, [0.01, 600.0, 0.02, 0.03], limit_s=1.0))
    assert results[600.0] == Failure("nap: still running after 1 s; its worker process was stopped")
    assert results[0.01] == 0.01 and results[0.02] == 0.02 and results[0.03] == 0.03


def test_thread_map_gives_every_item_once_and_fails_only_the_one_past_its_time():
    """`run`'s NVDEC decoders are threads of the model's process: a thread cannot be killed, so its item
    fails at the time limit, a new thread takes its place, and the other items all come back."""
    results = dict(thread_map(nap, [0.01, 600.0, 0.02, 0.03, 0.04], threads=2, limit_s=1.0))
    assert results[600.0] == Failure("nap: still running after 1 s; its thread was left behind")
    assert {k: v for k, v in results.items() if k != 600.0} == {0.01: 0.01, 0.02: 0.02, 0.03: 0.03, 0.04: 0.04}
    assert dict(thread_map(shout, ["a", "bad"], threads=4)) == {
        "a": "A",
        "bad": Failure("shout: ValueError: no shouting at bad"),
    }


def test_thread_map_holds_at_most_its_threads_items_unread():
    """Decoded frames wait in GPU memory until the model takes them: threads stop taking videos while
    `threads` results are unread."""
    started: list[int] = []

    def note(item: int) -> int:
        started.append(item)
        return item

    results = thread_map(note, list(range(20)), threads=3)
    first, _ = next(results)
    time.sleep(0.3)  # time for the threads to take every item they may
    assert len(started) == 4 and first in started  # 3 in hand, plus the one read
    assert sorted([first, *(item for item, _ in results)]) == list(range(20))
