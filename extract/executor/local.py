"""The local executor: worker processes on this machine, each holding one item at a time.

A pool of forked workers, each fed one item at a time over its own pipe, so the pool always knows
which item a dead worker held: that worker is replaced and only its item is retried (a
`concurrent.futures` pool marks itself broken instead and loses every item in flight). Workers
are forked from this process, so they share the function and, for model work, the model process's
memory; they exit when this process goes away. `workers=0` runs everything in this process.

Except beside Ray: in a process where Ray is initialised (a notebook that also runs the Ray backend),
its threads may hold locks at the moment of a fork, which the child then waits on forever (seen in
CI: a job sent to a forked worker, never received). There workers start from a fresh forkserver
process instead, so the function and its items travel pickled, and a model's inputs are prepared in
the model's own process.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from extract.core.errors import Failure, failure_of
from extract.executor.base import RETRIES, WORKER_DIED, Executor, ModelWork, call

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _serve(conn: Connection, others: list[Connection], fn: Callable, init: Callable[[], None] | None) -> None:
    """A worker's loop: (index, item) in, (index, result or Failure) out, until None or the parent is gone."""
    for other in others:  # the parent's ends of every pipe: only the parent may hold them
        other.close()
    if init is not None:
        init()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        index, item = job
        result = call(fn, item)
        try:
            conn.send((index, result))
        except Exception as exc:  # a result that cannot be pickled: the item's failure, not the worker's death
            conn.send((index, failure_of("sending the result", exc)))


def beside_ray() -> bool:
    """Whether Ray is initialised in this process (never imports it)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


class _Worker:
    def __init__(self, fn: Callable, init: Callable[[], None] | None, others: list[Connection]) -> None:
        forked = not beside_ray()
        context = multiprocessing.get_context("fork" if forked else "forkserver")
        self.conn, child = context.Pipe()
        # a forked child must hold no parent end, its own included: else it never sees the parent die
        # (a forkserver's child inherits none)
        held = [*others, self.conn] if forked else []
        self.process = context.Process(target=_serve, args=(child, held, fn, init), daemon=True)
        self.process.start()
        child.close()
        self.job: tuple[int, Any] | None = None
        self.since = 0.0  # when it was handed its job (time.monotonic)

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"


def pool_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    init: Callable[[], None] | None = None,
    limit_s: float | None = None,
) -> Iterator[tuple[T, R | Failure]]:
    """(item, fn(item) or Failure) for every item, from `workers` forked processes, as they finish.

    The workers are forked and handed their first items now, from the calling thread, so they work
    while the caller does something else (`run` builds its model) before reading any result. A
    worker holding one item longer than `limit_s` seconds is killed and replaced; that item fails."""
    todo = deque(enumerate(items))
    pool: list[_Worker] = []
    for _ in range(min(workers, len(todo))):
        pool.append(_Worker(fn, init, [w.conn for w in pool]))
        _hand_out(pool, len(pool) - 1, todo)
    name = getattr(fn, "__name__", "work")
    overdue = Failure(f"{name}: still running after {limit_s or 0:g} s; its worker process was stopped")
    return _results(pool, todo, lambda: _Worker(fn, init, [w.conn for w in pool]), limit_s, overdue)


def _hand_out(pool: list[_Worker], slot: int, todo: deque, start: Callable[[], _Worker] | None = None) -> None:
    """Give the idle worker in `slot` the next item, replacing it if it died after its last result."""
    worker = pool[slot]
    if worker.job is not None or not todo:
        return
    worker.job = todo.popleft()
    worker.since = time.monotonic()
    try:
        worker.conn.send(worker.job)
    except OSError:  # it died after its last result: hand the item to a new worker
        todo.appendleft(worker.job)
        worker.stop()
        if start is not None:
            pool[slot] = start()
            _hand_out(pool, slot, todo)


def _results(
    pool: list[_Worker], todo: deque, start: Callable[[], _Worker], limit_s: float | None, overdue: Failure
) -> Iterator[tuple[Any, Any]]:
    deaths: Counter[int] = Counter()
    try:
        while True:
            for slot in range(len(pool)):
                _hand_out(pool, slot, todo, start)
            busy = [w for w in pool if w.job is not None]
            if not busy:
                return
            timeout = None if limit_s is None else max(0.0, min(w.since for w in busy) + limit_s - time.monotonic())
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout))
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    if limit_s is not None and time.monotonic() - worker.since > limit_s:
                        worker.process.kill()
                        worker.stop()
                        pool[pool.index(worker)] = start()
                        yield worker.job[1], overdue
                    continue
                index, item = worker.job
                try:
                    _, result = worker.conn.recv()
                except (EOFError, OSError):  # died holding this item
                    deaths[index] += 1
                    log.warning("a worker process died (%s) on %s", worker.death(), item)
                    worker.stop()
                    pool[pool.index(worker)] = start()
                    if deaths[index] > RETRIES:
                        yield item, Failure(WORKER_DIED)
                    else:
                        todo.appendleft((index, item))
                    continue
                worker.job = None
                yield item, result
    finally:
        for worker in pool:
            worker.stop()


def thread_map(
    fn: Callable[[T], R], items: Sequence[T], threads: int, limit_s: float | None = None
) -> Iterator[tuple[T, R | Failure]]:
    """(item, fn(item) or Failure) for every item, from `threads` threads of this process, as they finish.

    For work that must stay in this process: frames decoded on the GPU its model runs on (a forked
    worker cannot use CUDA, and frames that crossed a pipe would be on the host). A thread holds
    its item and its result until the result is read, so at most `threads` items are in hand. A
    thread cannot be killed: an item held past `limit_s` fails, its thread is left to finish alone
    (a daemon, never waited for, its result dropped) and a new thread takes its place."""
    threads = max(1, threads)
    todo = deque(items)
    done: queue.Queue = queue.Queue()
    lock = threading.Lock()
    slots = threading.Semaphore(threads)  # items taken and not yet read
    held: dict[int, tuple[T, float]] = {}  # thread id -> (its item, since when)
    stop = threading.Event()
    name = getattr(fn, "__name__", "work")

    def serve() -> None:
        me = threading.get_ident()
        while True:
            slots.acquire()
            with lock:
                if stop.is_set() or not todo:
                    slots.release()
                    return
                item = todo.popleft()
                held[me] = (item, time.monotonic())
            result = call(fn, item)
            with lock:
                if held.pop(me, None) is None:
                    return  # overdue: its item has failed already, and another thread took its place
            done.put((item, result))

    def start() -> None:
        threading.Thread(target=serve, name=f"reelfeat-{name}", daemon=True).start()

    def next_result() -> tuple[T, R | Failure]:
        while True:
            with lock:
                since = min((started for _, started in held.values()), default=None)
            wait_s = 1.0 if limit_s is None or since is None else max(0.0, since + limit_s - time.monotonic())
            try:
                return done.get(timeout=wait_s)
            except queue.Empty:
                if limit_s is None:
                    continue
            with lock:
                late = [key for key, (_, started) in held.items() if time.monotonic() - started > limit_s]
                item = held.pop(late[0])[0] if late else None
            if late:
                start()
                return item, Failure(f"{name}: still running after {limit_s:g} s; its thread was left behind")

    for _ in range(min(threads, len(todo))):
        start()
    try:
        for _ in range(len(items)):
            item, result = next_result()
            slots.release()
            yield item, result
    finally:
        stop.set()
        slots.release(threads)  # threads waiting for a slot wake, see `stop` and end


class LocalExecutor(Executor):
    """Worker processes on this machine (`workers=0`: this process); models run in this process."""

    name = "local"
    remote = False

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.model_provenance = {}

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], limit_s: float | None = None
    ) -> Iterator[tuple[T, R | Failure]]:
        if self.workers == 0:  # in this process: nothing to kill, so only `fn`'s own time checks hold
            return ((item, call(fn, item)) for item in items)
        return pool_map(fn, items, self.workers, limit_s=limit_s)

    def map_model(self, work: ModelWork, items: Sequence[str]) -> Iterator[tuple[str, Any]]:
        runner = work.open()
        if self.workers == 0 or beside_ray():  # a runner holds its model: it travels by fork only
            prepared = ((item, call(runner.prepare, item)) for item in items)
        else:
            prepared = pool_map(runner.prepare, items, self.workers, init=lambda: work.init_worker(1))
        yield from runner.run(prepared)
        if items:
            self.model_provenance = runner.provenance()
