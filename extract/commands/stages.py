"""The pipeline's stage commands, as `dvc repro` runs them: prepare, decode, features, train-encoder."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from extract.commands.common import add_flags, videos_exit
from extract.core import project
from extract.core.cli import EXIT_OK, load_section, progress_bar
from extract.core.config import ConfigError


def cmd_prepare(args: argparse.Namespace) -> int:
    from extract.core.files import HashCache
    from extract.stages.manifest import prepare, prepare_config, write_prepared

    config = prepare_config(load_section(args.params, "prepare"))
    if args.skip_bad_rows:
        config = dataclasses.replace(config, skip_bad_rows=True)
    hashes = HashCache(Path(args.out) / ".sha256-cache.json")  # beside the outputs, not one of them
    prepared = prepare(config, hashes=hashes)
    out = write_prepared(prepared, args.out)
    hashes.save()
    args.clock.count(len(prepared.rows))
    for problem in prepared.rejected:
        print(f"warning: skipped {problem}", file=sys.stderr)
    if prepared.unwatched:
        print(
            f"warning: {len(prepared.unwatched)} video(s) lie outside prepare.videos ({config.videos}), "
            f"e.g. {prepared.unwatched[0]!r}: `dvc repro` will not notice when they change",
            file=sys.stderr,
        )
    splits = {s: sum(r["split"] == s for r in prepared.rows) for s in ("train", "val", "test")}
    missing = sum(not r["sha256"] for r in prepared.rows)
    print(
        f"{out}: {len(prepared.rows)} videos ({', '.join(f'{k} {v}' for k, v in splits.items())}), "
        f"{len(prepared.rejected)} rows skipped, {missing} video files missing"
    )
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from extract.stages.decode import run_decode, views_from_params
    from extract.stages.manifest import read_prepared

    views = views_from_params(load_section(args.params, "decode"))
    rows = read_prepared(args.manifest)
    with progress_bar(len(rows), "decode") as bar:
        summaries = run_decode(rows, views, args.out, args.workers, bar.update, args.backend, settings=args.settings)
    # every view of a video comes from one decode of it
    args.clock.count(
        max((s.computed for s in summaries.values()), default=0), max((s.reused for s in summaries.values()), default=0)
    )
    return videos_exit(summaries, "decoded", args.allow_failures)


def cmd_features(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers run in loader workers instead
    from extract.stages.features import run_features

    backbones = load_section(args.params, args.section)
    if args.backbone not in backbones:
        raise ConfigError(f"{args.params}: no {args.section}.{args.backbone}; configured: {sorted(backbones)}")
    values = backbones[args.backbone]
    if args.section == "encoders":  # a trained encoder's weights are what train-encoder wrote
        from extract.backbones.convlstm import encoder_checkpoint

        values = {"weights": str(encoder_checkpoint(args.backbone)), **(values or {})}
    out = Path(args.out or project.features(args.backbone))
    settings = args.settings.overridden(loader_workers=args.loader_workers)
    with progress_bar(0, f"extract@{args.backbone}") as bar:
        summary = run_features(
            args.backbone,
            values,
            out,
            batch_size=args.batch_size,
            progress=bar,
            backend=args.backend,
            section=args.section,
            settings=settings,
        )
    args.clock.count(summary.computed, summary.reused)
    return videos_exit({args.backbone: summary}, "extracted", args.allow_failures)


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from extract.backbones import backbone_config
    from extract.backbones.convlstm import encoder_checkpoint
    from extract.stages.train_encoder import train_encoder

    encoders = load_section(args.params, "encoders")
    if args.encoder not in encoders:
        raise ConfigError(f"{args.params}: no encoders.{args.encoder}; configured: {sorted(encoders)}")
    _, config = backbone_config(args.encoder, encoders[args.encoder], "encoders")
    path = train_encoder(config, args.out or encoder_checkpoint(args.encoder).parent)
    print(f"train-encoder@{args.encoder}: {config.epochs} epochs on {config.input} -> {path}")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="check the manifest, assign ids and splits, hash videos")
    p.add_argument("--out", default=str(project.PREPARED), help=f"output folder (default: {project.PREPARED})")
    p.add_argument("--skip-bad-rows", action="store_true", help="drop bad rows with a warning instead of stopping")
    p.set_defaults(run=cmd_prepare)

    p = sub.add_parser("decode", help=f"decode every view of every video into the stores {project.DECODED}/<view>")
    p.add_argument("--manifest", default=str(project.MANIFEST))
    p.add_argument("--out", default=str(project.DECODED))
    add_flags(p, "workers", "allow_failures", "backend")
    p.set_defaults(run=cmd_decode)

    p = sub.add_parser("features", help=f"run one configured backbone into the store {project.FEATURES}/<name>")
    p.add_argument("backbone", help="a key of `backbones` in params.yaml")
    p.add_argument("--out", default=None, help=f"store folder (default: {project.FEATURES}/<backbone>)")
    add_flags(p, "batch_size", "loader_workers", "allow_failures", "backend")
    p.add_argument(
        "--section",
        default="backbones",
        choices=("backbones", "encoders"),
        help="params.yaml section of the name: backbones, or encoders (trained by train-encoder)",
    )
    p.set_defaults(run=cmd_features)

    p = sub.add_parser(
        "train-encoder", help="train encoders.<name> (a ConvLSTM autoencoder) on the train split of its frames view"
    )
    p.add_argument("encoder", help="a key of `encoders` in params.yaml")
    p.add_argument("--out", default=None, help=f"folder (default: {project.ENCODERS}/<name>)")
    p.set_defaults(run=cmd_train_encoder)
