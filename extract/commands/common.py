"""What several commands share: each flag declared once with one meaning, and a stage's exit code."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from extract.core.cli import EXIT_OK, EXIT_VIDEOS_FAILED

FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "workers": (
        "--workers",
        {"type": int, "default": None, "help": "decode processes (default: REELFEAT_WORKERS, else one per core)"},
    ),
    "loader_workers": (
        "--loader-workers",
        {
            "type": int,
            "default": None,
            "help": "input-preparing processes beside the model (default: REELFEAT_LOADER_WORKERS, else 0 on "
            "the CPU, cores-1 up to 8 beside a GPU)",
        },
    ),
    "decoder": (
        "--decoder",
        {
            "default": None,
            "help": "video decoder beside the model: auto (NVDEC on the model's CUDA GPU where the file allows, else "
            "the CPU), cpu or nvdec (default: REELFEAT_DECODER, else auto)",
        },
    ),
    "backend": ("--backend", {"default": None, "help": "local or ray (default: REELFEAT_BACKEND, else local)"}),
    "allow_failures": (
        "--allow-failures",
        {"action": "store_true", "help": "exit 0 even when some videos failed (they stay listed in the stores)"},
    ),
    "batch_size": (
        "--batch-size",
        {"type": int, "default": None, "help": "model inputs per batch (default per input kind)"},
    ),
}


def add_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """The shared flags `names` (keys of FLAGS) on a command's parser."""
    for name in names:
        flag, options = FLAGS[name]
        parser.add_argument(flag, **options)


def videos_exit(summaries: dict, verb: str, allow_failures: bool) -> int:
    """Print what a stage did per store and every failure, and return its exit code: --allow-failures
    covers some videos failing, never a store where every video failed (a run that made nothing must
    not pass for done)."""
    from extract.store import summary_lines

    lines, failed = summary_lines(summaries, verb)
    print("\n".join(lines))
    empty = [name for name, s in summaries.items() if s.failures and not (s.computed or s.reused)]
    if empty:
        print(
            f"error: every video failed in {', '.join(empty)}: nothing was made (see the reasons above)",
            file=sys.stderr,
        )
        return EXIT_VIDEOS_FAILED
    return EXIT_VIDEOS_FAILED if failed and not allow_failures else EXIT_OK
