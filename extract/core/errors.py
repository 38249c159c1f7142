"""Two kinds of error, two behaviours.

`UserError`: the run cannot start or go on because of something the user gave (params, a table,
a missing file, a store made another way); the CLI prints its one-line message and exits 1. Any
other exception out of a command is a bug and keeps its traceback.

`Failure`: one video could not be processed at one step (probe, decode, reading the input store,
preparing inputs, the forward pass, assembling rows, transcription). Every per-video step ends in
rows or in a Failure, which is recorded in the store with its one-line reason; the run goes on.
Torch-free, so the stages that never run a model can import it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_REASON = 400  # characters of a recorded reason: enough for FFmpeg's last word, not a dump


class UserError(Exception):
    """Something the user gave is wrong; the message names the file or key and the fix."""


@dataclass(frozen=True)
class Failure:
    """Why one video has no rows, as one line: `<step>: <reason>`."""

    reason: str

    def __str__(self) -> str:
        return self.reason


class StepFailed(Exception):
    """Raised by `step` with the failure it made, so an outer step keeps the inner step's name."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def failure_of(step_name: str, exc: BaseException) -> Failure:
    """The failure for an exception raised at a step. A user-facing error is its message; anything
    else also names its type (it may be a bug), and is logged with its traceback, marked with its step
    and type (`repeat_key`) so that a command shows each such traceback once (`extract.core.cli`)."""
    if isinstance(exc, UserError):
        return Failure(one_line(f"{step_name}: {exc}"))
    log.warning(
        "unexpected %s at step %r (recorded for the video)",
        type(exc).__name__,
        step_name,
        exc_info=exc,
        extra={"repeat_key": (step_name, type(exc).__name__)},
    )
    return Failure(one_line(f"{step_name}: {type(exc).__name__}: {exc}"))


@contextmanager
def step(name: str) -> Iterator[None]:
    """Any exception inside becomes `StepFailed` with a Failure naming this step (inner steps win)."""
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:
        raise StepFailed(failure_of(name, exc)) from exc


def run_step(name: str, fn: Callable[..., T], *args: object) -> T | Failure:
    """`fn(*args)`, or the Failure of step `name` when it raises."""
    try:
        with step(name):
            return fn(*args)
    except StepFailed as failed:
        return failed.failure
