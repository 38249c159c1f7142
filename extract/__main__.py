"""`python -m extract COMMAND`: the extraction stages and store tools.

Exit codes: 0 done; 1 the run could not start or stopped (bad manifest, params or store,
each message names the file and the fix); 3 the run finished but some videos failed (they
are listed above the exit and inside each store under /failures).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from extract.core.cli import (
    EXIT_OK,
    EXIT_VIDEOS_FAILED,
    command_parser,
    exit_process,
    load_section,
    progress_bar,
    run_command,
)
from extract.core.config import ConfigError
from extract.media import SEEK_MODES
from extract.media.views import AudioView

PREPARED = "data/prepared/manifest.csv"  # `prepare`'s table, which commands read splits and captions from


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
    out = Path(args.out or f"data/features/{args.backbone}")
    with progress_bar(0, f"extract@{args.backbone}") as bar:
        summary = run_features(
            args.backbone,
            values,
            out,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=bar,
            backend=args.backend,
            section=args.section,
            settings=args.settings,
        )
    args.clock.count(summary.computed, summary.reused)
    summaries = {args.backbone: summary}
    return videos_exit(summaries, "extracted", args.allow_failures)


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


def cmd_run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from extract.backbones import input_kind
    from extract.media.views import ClipsView, FramesView
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


def cmd_weights(args: argparse.Namespace) -> int:
    import torch

    from extract.backbones import build_backbone
    from extract.core.files import file_sha256

    backbones = load_section(args.params, "backbones")
    for key in args.backbone or sorted(backbones):
        backbone = build_backbone(key, backbones[key], torch.device("cpu"))
        for path in backbone.weights.files:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                print(f"{key}\t{file}\t{file.stat().st_size}\t{file_sha256(file)}")
    return EXIT_OK


def cmd_backbones(args: argparse.Namespace) -> int:
    from extract.backbones import get_backbone, list_backbones

    names = list_backbones()
    width = max(map(len, names))
    for name in names:
        entry = get_backbone(name)
        print(f"{name:<{width}} reads {entry.input_kind:<7} {entry.about}")
    print("(and any torchvision image classifier by name)")
    return EXIT_OK


def cmd_import_paddle(args: argparse.Namespace) -> int:
    from extract.interop.paddle import import_paddle

    splits = {}
    for item in args.split:
        name, _, path = item.partition("=")
        if name not in ("train", "val", "test") or not path:
            raise ConfigError(f"--split {item!r}: write NAME=FILE with NAME train, val or test")
        splits[name] = Path(path)
    written = import_paddle(
        Path(args.features), splits, Path(args.classes) if args.classes else None, Path(args.out), args.trust_pickle
    )
    for what, path in written.items():
        print(f"{what}: {path}")
    return EXIT_OK


def cmd_export_paddle(args: argparse.Namespace) -> int:
    from extract.interop.paddle import export_paddle

    count = export_paddle(Path(args.image), Path(args.audio), Path(args.manifest), args.labels, Path(args.out))
    print(f"{args.out}: {count} videos in feature_files/, class.txt, train/val/test.txt")
    return EXIT_OK


def cmd_export_numpy(args: argparse.Namespace) -> int:
    from extract.interop.numpy_files import export_numpy

    count = export_numpy(args.store, args.out, args.feature_type)
    print(f"{args.out}: {count} videos as <id>_<feature type>.npy and <id>_timestamps_ms.npy")
    return EXIT_OK


def cmd_import_numpy(args: argparse.Namespace) -> int:
    from extract.interop.numpy_files import import_numpy

    store, count = import_numpy(args.folder, args.feature_type, args.out, args.dtype)
    print(f"{store}: {count} videos imported from {args.folder}")
    return EXIT_OK


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
    from extract.analysis.insight import embed_like, neighbours

    if (args.id is None) == (args.video is None):
        raise ConfigError("neighbours: name a video of the store (ID) or a new one (--video FILE), not both")
    query = None
    if args.video:
        backbones = load_section(args.params, "backbones") if Path(args.params).is_file() else {}
        query = embed_like(args.store, args.video, backbones, args.settings)
    found = neighbours(args.store, args.k, args.id, query, optional_manifest(args.manifest), args.caption)
    width = max((len(n.id) for n in found), default=2)
    for rank, n in enumerate(found, 1):
        print(f"{rank:>3}  {n.cosine:.4f}  {n.id:<{width}}  {n.split or '-':<5}  {n.caption}")
    return EXIT_OK


def optional_manifest(named: str | None) -> str | None:
    """A manifest named with --manifest, which must exist; without one, the prepared manifest where there is one."""
    if named is None:
        return PREPARED if Path(PREPARED).is_file() else None
    if not Path(named).is_file():
        raise ConfigError(f"--manifest {named}: no such file; name a prepared manifest, or leave it out")
    return named


def cmd_export_parquet(args: argparse.Namespace) -> int:
    from extract.interop.parquet_files import export_parquet

    count = export_parquet(args.store, args.out, optional_manifest(args.manifest))
    print(f"{args.out}: {count} videos as parquet shards in data/ and a dataset card (README.md)")
    return EXIT_OK


def cmd_import_parquet(args: argparse.Namespace) -> int:
    from extract.interop.parquet_files import import_parquet

    store, count = import_parquet(args.folder, args.out)
    print(f"{store}: {count} videos imported from {args.folder}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from extract.store import describe

    for path in args.stores:
        print(describe(path))
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The extraction commands, for `python -m extract` and for `reelfeat`."""
    p = sub.add_parser("prepare", help="check the manifest, assign ids and splits, hash videos")
    p.add_argument("--out", default="data/prepared", help="output folder (default: data/prepared)")
    p.add_argument("--skip-bad-rows", action="store_true", help="drop bad rows with a warning instead of stopping")
    p.set_defaults(run=cmd_prepare)

    p = sub.add_parser("decode", help="decode every view of every video into the stores data/decoded/<view>")
    p.add_argument("--manifest", default="data/prepared/manifest.csv")
    p.add_argument("--out", default="data/decoded")
    p.add_argument(
        "--workers", type=int, default=None, help="decode processes (default: REELFEAT_WORKERS, else one per core)"
    )
    p.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when some videos failed (they stay listed in the stores)",
    )
    p.add_argument("--backend", default=None, help="local or ray (default: REELFEAT_BACKEND, else local)")
    p.set_defaults(run=cmd_decode)

    p = sub.add_parser("features", help="run one configured backbone into the store data/features/<name>")
    p.add_argument("backbone", help="a key of `backbones` in params.yaml")
    p.add_argument("--out", default=None, help="store folder (default: data/features/<backbone>)")
    p.add_argument("--batch-size", type=int, default=None, help="model inputs per batch (default per input kind)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="input-preparing processes (default: REELFEAT_LOADER_WORKERS, else 0 on CPU, cores-1 up to 8 for a GPU)",
    )
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when some videos failed")
    p.add_argument("--backend", default=None, help="local or ray (default: REELFEAT_BACKEND, else local)")
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
    p.add_argument("--out", default=None, help="folder (default: data/encoders/<name>)")
    p.set_defaults(run=cmd_train_encoder)

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
        choices=["auto", *SEEK_MODES],
        help="how exactly frames are found (default: auto for frames, fast where they are sparse; exact for clips)",
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
    p.add_argument("--batch-size", type=int, default=None, help="model inputs per batch (default per input kind)")
    p.add_argument(
        "--workers", type=int, default=None, help="decode processes (default: REELFEAT_WORKERS, else one per core)"
    )
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when some videos failed")
    p.add_argument("--backend", default=None, help="local or ray (default: REELFEAT_BACKEND, else local)")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backbone option as its params.yaml entry takes it, the value read as YAML; repeatable "
        "(e.g. --set transcribe=false for whisper rows without transcripts)",
    )
    p.set_defaults(run=cmd_run)

    p = sub.add_parser("weights", help="fetch every configured backbone's weights; print file, size, sha256")
    p.add_argument("backbone", nargs="*", help="only these keys of `backbones` (default: all)")
    p.set_defaults(run=cmd_weights)

    p = sub.add_parser("backbones", help="list the registered backbones")
    p.set_defaults(run=cmd_backbones)

    p = sub.add_parser("import-paddle", help="PaddleVideo MultimodalVideoTag feature files -> reelfeat stores")
    p.add_argument("--features", required=True, help="folder of <name>.pkl feature files")
    p.add_argument("--split", action="append", required=True, help="NAME=FILE split file (train, val, test)")
    p.add_argument("--classes", default=None, help="class list (keeps only these labels)")
    p.add_argument("--out", required=True, help="folder for the stores paddle_image, paddle_audio and manifest.csv")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load the pickles (plain data only: numpy arrays, dicts, lists, strings, numbers)",
    )
    p.set_defaults(run=cmd_import_paddle)

    p = sub.add_parser("export-paddle", help="reelfeat stores -> PaddleVideo MultimodalVideoTag feature files")
    p.add_argument("--image", default="data/features/resnet50")
    p.add_argument("--audio", default="data/features/vggish")
    p.add_argument("--manifest", default="data/prepared/manifest.csv")
    p.add_argument("--labels", default="tags", help="manifest column of comma-separated labels")
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_export_paddle)

    p = sub.add_parser("export-numpy", help="a feature store -> NumPy files per video, as video_features writes them")
    p.add_argument("store", help="a feature store folder, e.g. data/features/resnet50")
    p.add_argument("--out", required=True, help="folder for <id>_<feature type>.npy and <id>_timestamps_ms.npy")
    p.add_argument("--feature-type", default=None, help="the files' suffix (default: the store folder's name)")
    p.set_defaults(run=cmd_export_numpy)

    p = sub.add_parser("import-numpy", help="NumPy files per video (video_features output) -> a feature store")
    p.add_argument("folder", help="folder of <id>_<feature type>.npy files (and <id>_timestamps_ms.npy)")
    p.add_argument("--feature-type", required=True, help="the files' suffix: resnet, vggish, r21d, i3d's rgb, ...")
    p.add_argument("--out", required=True, help="store folder to write")
    p.add_argument("--dtype", default=None, help="of the stored rows (default: the files'), e.g. float16")
    p.set_defaults(run=cmd_import_numpy)

    p = sub.add_parser("export-parquet", help="a feature store -> parquet shards and a Hugging Face dataset card")
    p.add_argument("store", help="a feature store folder, e.g. data/features/resnet50")
    p.add_argument("--out", required=True, help="folder for README.md and data/*.parquet")
    p.add_argument(
        "--manifest", default=None, help=f"columns to add: caption, split, labels (default: {PREPARED} if there is one)"
    )
    p.set_defaults(run=cmd_export_parquet)

    p = sub.add_parser("import-parquet", help="export-parquet's folder -> a feature store (same rows and recipe)")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="store folder to write")
    p.set_defaults(run=cmd_import_parquet)

    p = sub.add_parser("insight", help="duplicates and split leakage in one feature store (params insight.<name>)")
    p.add_argument("name")
    p.add_argument("--out", default=None, help="output folder (default: data/insight/<name>)")
    p.set_defaults(run=cmd_insight)

    p = sub.add_parser("neighbours", help="the nearest videos of a store to one of its videos, or to a new video")
    p.add_argument("store", help="a feature store, e.g. data/features/resnet50")
    p.add_argument("id", nargs="?", default=None, help="a video of the store (its manifest id)")
    p.add_argument("--video", default=None, help="a new video file instead, embedded with the store's recipe")
    p.add_argument("-k", type=int, default=10, help="how many (default 10)")
    p.add_argument(
        "--manifest", default=None, help=f"where splits and captions come from (default: {PREPARED} if there is one)"
    )
    p.add_argument("--caption", default="text", help="the manifest column shown (default: text)")
    p.set_defaults(run=cmd_neighbours)

    p = sub.add_parser("info", help="print a store's provenance, sizes and failures")
    p.add_argument("stores", nargs="+")
    p.set_defaults(run=cmd_info)


def main(argv: list[str] | None = None) -> int:
    parser, sub = command_parser("python -m extract", __doc__)
    add_commands(sub)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    exit_process(main())
