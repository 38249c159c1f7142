"""The command-line frame of `python -m extract`, `python -m heads` and `reelfeat`: the parser, how a
command runs, its exit codes, and the params section each command reads.

Exit codes: 0 done; 1 the run could not start or stopped (bad manifest, params or store, a full
disk; each message names the file and the fix); 3 the run finished but some videos failed (they are
listed above the exit and inside each store under /failures).
"""

from __future__ import annotations

import argparse
import atexit
import errno
import logging
import os
import re
import shutil
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import yaml
from tqdm import tqdm

from extract.core.config import ConfigError
from extract.core.errors import UserError
from extract.core.runlog import StageClock
from extract.core.settings import Settings

EXIT_OK, EXIT_ERROR, EXIT_VIDEOS_FAILED = 0, 1, 3
LOGGERS = ("extract", "heads", "reelfeat")  # the project's packages; other libraries keep their own settings


class CommandLog(logging.Handler):
    """Log records of the project's packages on the command's stderr: `warning: ...` and `error: ...`
    (the CLI's one-line style), info as it is. A traceback logged for a video's failure
    (`errors.failure_of`) is shown once per step and exception type in a command; later ones are one line
    each, since the store and the command's summary list every video that failed."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stream = sys.stderr  # the one the command started with (tests swap it per test)
        self.shown: set[object] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            key = getattr(record, "repeat_key", None)
            message = record.getMessage()
            if record.exc_info and key not in self.shown:
                self.shown.add(key)
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            prefix = "" if record.levelno < logging.WARNING else record.levelname.lower() + ": "
            self.stream.write(prefix + message + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must never stop the command
            self.handleError(record)


@contextmanager
def command_logging() -> Iterator[None]:
    """The project's loggers at INFO on `CommandLog` while one command runs, as they were after it."""
    handler = CommandLog()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def exit_process(code: int) -> NoReturn:
    """End a command's process with `code` once its exit handlers have run (Ray's shutdown, logging's
    flush, h5py's closing of files) and its output is flushed, skipping the interpreter's teardown: its
    last garbage collections walk every object torch and its compiler stack made, 0.6 s of a process
    that imported torchvision (`run` on the seven real clips: 4.5 s to 3.9 s). Every file a command
    writes is closed and renamed into place before it returns, so nothing is left for the teardown."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


def load_section(params_path: str, section: str) -> dict:
    """One top-level section of params.yaml: each stage reads only its own."""
    path = Path(params_path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; run from the project root or pass --params")
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if section not in params:
        raise ConfigError(f"{path}: no `{section}` section; see docs/ (linked from the README) for its keys")
    return params[section] or {}


def progress_bar(total: int, desc: str) -> tqdm:
    """A progress bar for terminals; in CI logs and pipes it stays quiet."""
    return tqdm(total=total, desc=desc, unit="video", disable=None, file=sys.stderr)


def command_parser(prog: str, description: str | None) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A parser with the common `--params` flag, and the place its commands go."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser, parser.add_subparsers(dest="command", required=True)


def command_of(argv: list[str] | None) -> str | None:
    """The command word of a command line (`--params FILE` may come before it); None where there is none."""
    words = list(sys.argv[1:] if argv is None else argv)
    while words and words[0].startswith("-"):
        if words.pop(0) == "--params" and words:
            words.pop(0)
    return words[0] if words else None


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command. A user error (bad params, table or store, a missing file, a bad setting;
    each message names the file or variable and the fix) is one line and exit 1; anything else is a
    bug and keeps its traceback. The command gets `args.settings`, read from the environment once here
    (commands put their flags over them), and `args.clock`; under `dvc repro` a finished command
    records its time for the report (`extract.core.runlog`)."""
    args.clock = StageClock()  # commands count their videos on it
    with command_logging():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        args.settings = Settings.from_environment()
        code = args.run(args)
        if code != EXIT_ERROR:
            args.clock.record(args.settings.dvc_stage, args.settings.dvc_root)
        return code
    except (UserError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # stdout's reader stopped early (`| head`): what it read was printed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_ERROR
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"error: {no_space(exc)}", file=sys.stderr)
        return EXIT_ERROR


def no_space(exc: OSError) -> str:
    """One line for a full disk: the folder being written, the space left there, and that a rerun goes on."""
    named = exc.filename or re.search(r"filename = '([^']+)'", str(exc))  # h5py names it in its message
    if not named:
        return "no space left on the device: free some space and run it again"
    folder = Path(named if isinstance(named, str) else named.group(1)).parent
    free = shutil.disk_usage(folder).free / 1e6 if folder.is_dir() else 0.0
    return (
        f"no space left on the device writing {folder} ({free:.1f} MB free there): free some space and run "
        "it again; the stores keep their last finished state and what this run finished is reused"
    )
