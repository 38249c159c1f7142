"""`run`: decode videos and run one backbone over them in one process, no DVC project."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from extract.commands.common import add_flags, videos_exit
from extract.core.cli import progress_bar
from extract.core.config import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from extract.backbones import input_kind
    from extract.media.views import AudioView, ClipsView, FramesView
    from extract.ondemand.oneshot import run_one_shot
    from extract.stages.manifest import video_rows

    if bool(args.videos) == bool(args.manifest):
        raise ConfigError("name video files, or give a table with --manifest, not both")
    kind = input_kind(args.backbone)
    sampling = {"max_seconds": args.max_seconds, **({"seek": args.seek} if args.seek else {})}  # else the view's
    if kind == "frames":
        count = {"num_frames": None, "fps": args.fps} if args.fps else {"num_frames": args.frames}
        view = FramesView(**count, **sampling)
    elif kind == "clips":
        view = ClipsView(num_clips=args.clips, clip_len=args.clip_len, fps=args.fps, **sampling)
    else:
        view = AudioView(sample_rate=args.sample_rate, max_seconds=args.max_seconds) if kind == "audio" else None
    if view is not None:
        view.validate("python -m extract run")
    values = {"model": args.backbone, "weights": args.weights, "dtype": args.dtype, "precision": args.precision}
    values |= backbone_options(args.options, values)
    if args.column:
        values["column"] = args.column
    rows = video_rows(args.videos, args.manifest, Path.cwd())
    with progress_bar(len(rows), f"run {args.backbone}") as bar:
        summary = run_one_shot(
            args.backbone,
            values,
            rows,
            view,
            args.out,
            batch_size=args.batch_size,
            workers=args.workers,
            backend=args.backend,
            decoder=args.decoder,
            progress=bar,
            settings=args.settings,
        )
    args.clock.count(summary.computed, summary.reused)
    summaries = {args.backbone: summary}
    return videos_exit(summaries, "extracted", args.allow_failures)


def backbone_options(pairs: list[str], flags: dict) -> dict:
    """`run --set KEY=VALUE` pairs as a backbone's params.yaml entry would give them: each value read as
    YAML (`false`, `3`, `[1, 2]`); the backbone's config checks keys and types when it is built."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"run --set {pair!r}: write KEY=VALUE, e.g. --set transcribe=false")
        if key == "model":
            raise ConfigError("run --set model: name the backbone as run's first argument instead")
        if key in flags:
            raise ConfigError(f"run --set {key}: give it with --{key} instead")
        try:
            options[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"run --set {pair!r}: {text!r} is not a YAML value; quote it") from None
    return options


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="decode and extract in one process, no DVC project: a backbone over videos into OUT/<backbone>",
        description="Decode videos and run one backbone over them in one process, into the store "
        "OUT/<backbone> (the format `features` writes) and OUT/manifest.csv (the ids). Sampling flags "
        "apply to the backbone's input: frames, clips or audio (--sample-rate). Rerunning into the same OUT "
        "reuses videos whose file and settings are unchanged.",
    )
    p.add_argument("backbone", help="a registered backbone (see `python -m extract backbones`)")
    p.add_argument("videos", nargs="*", help="video files (ids: their paths without extension)")
    p.add_argument("--manifest", default=None, help="a table of videos instead (columns as `prepare` reads them)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", default=None, help="library weights name or local file/folder (default: the model's)")
    p.add_argument("--frames", type=int, default=16, help="frames per video, spread over it (default 16)")
    p.add_argument("--fps", type=float, default=None, help="sample at this rate instead of --frames")
    p.add_argument("--clips", type=int, default=1, help="clips per video for video models (default 1)")
    p.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument(
        "--max-seconds", type=float, default=None, help="sample only the first seconds (default: the whole video)"
    )
    p.add_argument(
        "--seek",
        default=None,
        help="how exactly frames are found: auto, exact, fast or keyframes, checked with the view (default: auto "
        "for frames, fast where they are sparse; exact for clips)",
    )
    p.add_argument(
        "--sample-rate", type=int, default=16000, help="audio backbones: the rate they take (default 16000; clap 48000)"
    )
    p.add_argument("--column", default=None, help="text backbones: the table's text column (default text)")
    p.add_argument("--dtype", default="float16", help="of the stored features: float16 (default) or float32")
    p.add_argument(
        "--precision",
        default="auto",
        help="model compute precision: auto (bfloat16 where the CPU has it natively, float16 on CUDA, else "
        "float32; the default), float32, bfloat16, float16, or int8 (image classifiers on the CPU)",
    )
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backbone option as its params.yaml entry takes it, the value read as YAML; repeatable "
        "(e.g. --set transcribe=false for whisper rows without transcripts)",
    )
    add_flags(p, "batch_size", "workers", "allow_failures", "backend", "decoder")
    p.set_defaults(run=cmd_run)
