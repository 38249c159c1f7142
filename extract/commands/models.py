"""What the registry offers and what a project's backbones load: `backbones` and `weights`."""

from __future__ import annotations

import argparse

from extract.core.cli import EXIT_OK, load_section


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


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="fetch every configured backbone's weights; print file, size, sha256")
    p.add_argument("backbone", nargs="*", help="only these keys of `backbones` (default: all)")
    p.set_defaults(run=cmd_weights)

    p = sub.add_parser("backbones", help="list the registered backbones")
    p.set_defaults(run=cmd_backbones)
