"""The executor interface: what the decode and extract stages hand over, and what comes back.

Two kinds of work:
- `map(fn, items, limit_s)`: `fn(item)` for every item (decode: one video's views), each in a worker;
  a local worker that holds one item longer than `limit_s` is killed and the item fails (a call
  into a C library that never returns cannot be stopped from inside; Ray tasks are not timed).
- `map_model(work, items)`: a model built once per model process (`work.open()`), fed with inputs
  that `runner.prepare(item)` makes (in worker processes where the backend has them), and run
  by `runner.run(...)`, which batches across items.

Whatever the backend, every item comes back exactly once, with its result or a `Failure`: an
exception is the item's failure (see `extract.core.errors`), and a worker process that dies on an item
(segfault, out-of-memory kill) is started again and the item retried `RETRIES` times, then
recorded. Results come back as they finish, not in input order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from extract.core.errors import Failure, run_step

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 1  # a worker that died on an item is replaced and the item run once more
WORKER_DIED = f"worker: its worker process died {RETRIES + 1} times on this video (a crash, or out of memory)"


class ModelRunner(Protocol):
    """A model in one process, with what it reads."""

    def prepare(self, item: str) -> Any:
        """One item's model inputs, made on the CPU; may raise (the item fails)."""

    def run(self, prepared: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        """(item, prepared inputs or Failure) in, (item, result or Failure) out, one out per in."""

    def provenance(self) -> dict[str, str | int]:
        """Where and how the model ran (device, precision, batch size), as the process running it saw it."""


class ModelWork(Protocol):
    """Picklable instructions for building a model runner in whichever process runs it."""

    def open(self) -> ModelRunner:
        """The runner for this process, built once."""

    def on_device(self, device: str) -> ModelWork:
        """The same work for another device ("cpu", "cuda")."""

    def init_worker(self, threads: int) -> None:
        """Set up a fresh worker process that uses `threads` cores."""


def call(fn: Callable[[T], R], item: T) -> R | Failure:
    """`fn(item)`, or the failure of whichever step inside it raised."""
    return run_step(getattr(fn, "__name__", "work"), fn, item)


class Executor(ABC):
    name: ClassVar[str]
    remote: ClassVar[bool]  # models run in other processes: the caller's copy only describes the run
    # after `map_model` has run: the runners' `provenance()`, as reported where the model ran ({} if none ran);
    # where runners differ (a cluster of GPU and CPU nodes), a key's values are joined with commas
    model_provenance: dict[str, str | int]

    @abstractmethod
    def map(
        self, fn: Callable[[T], R], items: Sequence[T], limit_s: float | None = None
    ) -> Iterator[tuple[T, R | Failure]]:
        """(item, fn(item) or Failure) for every item, as they finish; items held past `limit_s` fail."""

    @abstractmethod
    def map_model(self, work: ModelWork, items: Sequence[str]) -> Iterator[tuple[str, Any]]:
        """(item, result or Failure) for every item, as they finish."""


def merged(reports: list[dict[str, str | int]]) -> dict[str, str | int]:
    """Runners' provenance as one record: a value they all share, or their distinct values joined."""
    keys = dict.fromkeys(key for report in reports for key in report)
    joined = {key: sorted({str(report[key]) for report in reports if key in report}) for key in keys}
    return {
        key: next(iter(r[key] for r in reports if key in r)) if len(values) == 1 else ",".join(values)
        for key, values in joined.items()
    }
