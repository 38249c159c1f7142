"""`info`: a store's provenance, sizes and failures."""

from __future__ import annotations

import argparse

from extract.core.cli import EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from extract.store import store_info

    for path in args.stores:
        print(store_info(path))
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a store's provenance, sizes and failures")
    p.add_argument("stores", nargs="+")
    p.set_defaults(run=cmd_info)
