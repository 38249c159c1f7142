"""`reelfeat COMMAND`: every command of `python -m extract` and `python -m heads`, and `report`.

Exit codes: 0 done; 1 the run could not start or stopped (the message names the file and the
fix); 3 the run finished but some videos failed (they are listed above the exit).
"""

from __future__ import annotations

import argparse

from extract.__main__ import add_commands as add_extract_commands
from extract.core.cli import EXIT_OK, command_of, command_parser, exit_process, load_section, run_command
from heads.__main__ import add_commands as add_head_commands


def cmd_report(args: argparse.Namespace) -> int:
    from reelfeat.report.config import REPORT, report_config
    from reelfeat.report.page import write_page

    path = write_page(report_config(load_section(args.params, "report")), args.out or REPORT)
    print(f"report: {path} ({path.stat().st_size:,} bytes, self-contained)")
    return EXIT_OK


def cmd_preset(args: argparse.Namespace) -> int:
    from reelfeat.preset import add_preset

    added = add_preset(args.name, args.params)
    if not added:
        print(f"{args.params} already has every entry of preset {args.name}")
    else:
        print(f"{args.params}: added preset {args.name}: {', '.join(added)}; `dvc repro` runs their stages")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    from reelfeat.preset import preset_names

    p = sub.add_parser("report", help="one self-contained HTML page of the heads, stores and last run")
    p.add_argument("--out", default=None, help="the page (default: data/report/index.html)")
    p.set_defaults(run=cmd_report)
    p = sub.add_parser("preset", help="add a preset's views, backbones and heads to params.yaml")
    p.add_argument("name", help=f"the preset: {', '.join(preset_names())}")
    p.set_defaults(run=cmd_preset)


def main(argv: list[str] | None = None) -> int:
    parser, sub = command_parser("reelfeat", __doc__)
    command = command_of(argv)
    add_head_commands(sub)
    add_commands(sub)
    if command not in sub.choices:  # an extraction command loads its group alone, as `python -m extract` does
        add_extract_commands(sub, command)
    return run_command(parser.parse_args(argv))


def console() -> None:
    """The installed `reelfeat` command."""
    exit_process(main())


if __name__ == "__main__":
    console()
