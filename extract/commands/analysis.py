"""What a feature store says about a dataset: `insight` (duplicates, leakage) and `neighbours`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from extract.core import project
from extract.core.cli import EXIT_OK, load_section
from extract.core.config import ConfigError


def cmd_insight(args: argparse.Namespace) -> int:
    from extract.analysis.insight import INSIGHT, crowding, insight_config, run_insight

    section = load_section(args.params, "insight")
    if args.name not in section:
        raise ConfigError(f"{args.params}: no insight.{args.name}; configured: {sorted(section)}")
    summary = run_insight(insight_config(args.name, section[args.name]), Path(args.out or INSIGHT / args.name))
    print(
        f"insight@{args.name}: {summary['groups']} duplicate groups ({summary['videos_in_groups']} of "
        f"{summary['videos']} videos, {summary['exact_duplicates']} exact); {summary['leaking_groups']} groups "
        f"straddle train and test ({summary['leaking_test_videos']} test videos)"
    )
    if warning := crowding(summary):
        print(f"warning: insight@{args.name}: {warning}", file=sys.stderr)
    return EXIT_OK


def cmd_neighbours(args: argparse.Namespace) -> int:
    from extract.analysis.neighbours import embed_like, neighbours

    if (args.id is None) == (args.video is None):
        raise ConfigError("neighbours: name a video of the store (ID) or a new one (--video FILE), not both")
    query = None
    if args.video:
        backbones = load_section(args.params, "backbones") if Path(args.params).is_file() else {}
        query = embed_like(args.store, args.video, backbones, args.settings)
    found = neighbours(args.store, args.k, args.id, query, project.optional_manifest(args.manifest), args.caption)
    width = max((len(n.id) for n in found), default=2)
    for rank, n in enumerate(found, 1):
        print(f"{rank:>3}  {n.cosine:.4f}  {n.id:<{width}}  {n.split or '-':<5}  {n.caption}")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("insight", help="duplicates and split leakage in one feature store (params insight.<name>)")
    p.add_argument("name")
    p.add_argument("--out", default=None, help=f"output folder (default: {project.INSIGHT}/<name>)")
    p.set_defaults(run=cmd_insight)

    p = sub.add_parser("neighbours", help="the nearest videos of a store to one of its videos, or to a new video")
    p.add_argument("store", help="a feature store, e.g. data/features/resnet50")
    p.add_argument("id", nargs="?", default=None, help="a video of the store (its manifest id)")
    p.add_argument("--video", default=None, help="a new video file instead, embedded with the store's recipe")
    p.add_argument("-k", type=int, default=10, help="how many (default 10)")
    p.add_argument(
        "--manifest", default=None, help=f"where splits and captions come from (default: {project.MANIFEST}, if there)"
    )
    p.add_argument("--caption", default="text", help="the manifest column shown (default: text)")
    p.set_defaults(run=cmd_neighbours)
