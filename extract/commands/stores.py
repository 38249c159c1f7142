"""`info` (a store's provenance, sizes and failures) and `verify` (every byte of it, and `--repair`)."""

from __future__ import annotations

import argparse

from extract.core.cli import EXIT_ERROR, EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from extract.store import store_info

    for path in args.stores:
        print(store_info(path))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from extract.store import repair, verify

    damaged = 0
    for path in args.stores:
        found = verify(path)
        for damage in found.damaged:
            print(f"{found.store / damage.shard}: damaged ({damage.reason}); its {len(damage.videos)} videos are lost")
        if not found.damaged:
            print(f"{found.store}: {found.shards} shards whole ({found.checksummed} with checksums, the rest by hash)")
        elif args.repair:
            dropped = repair(found)
            print(
                f"{found.store}: dropped {len(found.damaged)} damaged shards ({dropped} videos) from its index; "
                "rerun the stage that writes it (dvc repro) to compute just those videos again"
            )
        else:
            damaged += 1
    if damaged:
        print("restore the damaged stores (dvc checkout, or dvc pull), or rerun with --repair and then the stages")
    return EXIT_ERROR if damaged else EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a store's provenance, sizes and failures")
    p.add_argument("stores", nargs="+")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("verify", help="check every shard of stores against its hash and checksums; exit 1 if damaged")
    p.add_argument("stores", nargs="+")
    p.add_argument(
        "--repair",
        action="store_true",
        help="drop damaged shards from the index, so that the stage's next run recomputes only their videos",
    )
    p.set_defaults(run=cmd_verify)
