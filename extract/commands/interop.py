"""Feature files in other tools' formats: PaddleVideo, NumPy files per video, Parquet shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from extract.core import project
from extract.core.cli import EXIT_OK
from extract.core.config import ConfigError


def cmd_import_paddle(args: argparse.Namespace) -> int:
    from extract.interop.paddle import import_paddle

    splits = {}
    for item in args.split:
        name, _, path = item.partition("=")
        if name not in ("train", "val", "test") or not path:
            raise ConfigError(f"--split {item!r}: write NAME=FILE with NAME train, val or test")
        splits[name] = Path(path)
    imported = import_paddle(
        Path(args.features), splits, Path(args.classes) if args.classes else None, Path(args.out), args.trust_pickle
    )
    print("\n".join(imported.lines(args.features)))
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

    print("\n".join(import_numpy(args.folder, args.feature_type, args.out, args.dtype).lines(args.folder)))
    return EXIT_OK


def cmd_export_parquet(args: argparse.Namespace) -> int:
    from extract.interop.parquet_files import export_parquet

    count = export_parquet(args.store, args.out, project.optional_manifest(args.manifest))
    print(f"{args.out}: {count} videos as parquet shards in data/ and a dataset card (README.md)")
    return EXIT_OK


def cmd_import_parquet(args: argparse.Namespace) -> int:
    from extract.interop.parquet_files import import_parquet

    print("\n".join(import_parquet(args.folder, args.out).lines(args.folder)))
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--image", default=str(project.features("resnet50")))
    p.add_argument("--audio", default=str(project.features("vggish")))
    p.add_argument("--manifest", default=str(project.MANIFEST))
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
        "--manifest",
        default=None,
        help=f"columns to add: caption, split, labels (default: {project.MANIFEST}, if there)",
    )
    p.set_defaults(run=cmd_export_parquet)

    p = sub.add_parser("import-parquet", help="export-parquet's folder -> a feature store (same rows and recipe)")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="store folder to write")
    p.set_defaults(run=cmd_import_parquet)
