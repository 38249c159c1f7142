"""`python -m extract COMMAND`: the extraction stages and store tools.

Exit codes: 0 done; 1 the run could not start or stopped (bad manifest, params or store,
each message names the file and the fix); 3 the run finished but some videos failed (they
are listed above the exit and inside each store under /failures).
"""

from __future__ import annotations

import argparse
import importlib

from extract.core.cli import command_of, command_parser, exit_process, run_command

# the commands, by the module (extract/commands/) that defines and runs them; a process imports only
# the module of the command it runs, so a stage loads what it uses and no other command's code
GROUPS = {
    "extract.commands.stages": ("prepare", "decode", "features", "train-encoder"),
    "extract.commands.ondemand": ("run",),
    "extract.commands.models": ("weights", "backbones"),
    "extract.commands.interop": (
        "import-paddle",
        "export-paddle",
        "export-numpy",
        "import-numpy",
        "export-parquet",
        "import-parquet",
    ),
    "extract.commands.analysis": ("insight", "neighbours"),
    "extract.commands.stores": ("info", "verify"),
}
COMMANDS = {command: module for module, commands in GROUPS.items() for command in commands}


def add_commands(sub: argparse._SubParsersAction, command: str | None = None) -> None:
    """The extraction commands, for `python -m extract` and for `reelfeat`: only `command`'s group where
    it is one of them, else every group (for --help, and to name the commands there are)."""
    modules = [COMMANDS[command]] if command in COMMANDS else list(GROUPS)
    for module in modules:
        importlib.import_module(module).add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    parser, sub = command_parser("python -m extract", __doc__)
    add_commands(sub, command_of(argv))
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    exit_process(main())
