"""`python -m heads COMMAND`: train, evaluate and use heads on cached features.

Exit codes: 0 done; 1 could not run (bad params, missing store or checkpoint; the message names
the file and the fix); 3 predict finished but some videos failed (their lines carry the error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from extract.core import project
from extract.core.cli import EXIT_OK, EXIT_VIDEOS_FAILED, command_parser, exit_process, load_section, run_command
from extract.core.config import ConfigError

# what `dvc repro` reruns a head's stages on: the stores it names, by content (dvc.yaml: stores@<head>)
STORES = "stores.json"


def head_dir(name: str) -> Path:
    return project.head(name)


def configured(args: argparse.Namespace) -> dict:
    heads = load_section(args.params, "heads")
    if args.head not in heads:
        raise ConfigError(f"{args.params}: no heads.{args.head}; configured: {sorted(heads)}")
    return heads[args.head]


def cmd_train(args: argparse.Namespace) -> int:
    from heads.config import head_config
    from heads.train import SWEEP, kept_row, read_sweep, train

    config = head_config(args.head, configured(args))
    path = train(config, args.out or head_dir(args.head))
    done = "embedded the labels of a zero-shot" if config.kind == "zero_shot" else "trained"
    print(f"{args.head}: {done} {config.task} head on {', '.join(i.key for i in config.inputs)} -> {path}")
    sweep = read_sweep(path.parent)
    if sweep:
        chosen = ", ".join(f"{key} {kept_row(sweep)[key]}" for key in sweep["swept"])
        print(f"{args.head}: best of {len(sweep['rows'])} configurations on val: {chosen} -> {path.parent / SWEEP}")
    return EXIT_OK


def cmd_stores(args: argparse.Namespace) -> int:
    from extract.core.files import write_text
    from extract.store import digest
    from heads.config import head_config

    config = head_config(args.head, configured(args))
    digests = {i.store: digest(Path(i.store)) for i in config.inputs}
    path = Path(args.out or head_dir(args.head)) / STORES
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"{args.head}: the digests of {len(digests)} store(s) -> {path}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from heads.evaluate import evaluate

    metrics = evaluate(args.out or head_dir(args.head))
    for split in ("val", "test"):
        if split in metrics:
            shown = {k: v for k, v in metrics[split].items() if "/" not in k and k != "ci95"}
            print(f"{args.head} {split}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    import yaml

    from extract.core.files import atomic_write
    from heads.predict import predict

    if bool(args.manifest) == bool(args.videos):
        raise ConfigError("give either --manifest M or video files, not both and not neither")
    # the checkpoint says how to make the inputs; params.yaml only locates weights kept in local files
    params_file = Path(args.params)
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {} if params_file.is_file() else {}
    folder = args.out_dir or head_dir(args.head)
    if not args.out:
        failed = predict(folder, params, args.videos, args.manifest, sys.stdout, args.settings)
    else:  # the file is replaced only once every line is written
        with atomic_write(args.out, "w", encoding="utf-8") as out:
            failed = predict(folder, params, args.videos, args.manifest, out, args.settings)
    if failed:
        print(f"{failed} video(s) failed; their lines carry the error", file=sys.stderr)
    return EXIT_VIDEOS_FAILED if failed else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from heads.config import head_config

    for name, values in load_section(args.params, "heads").items():
        config = head_config(name, values)
        inputs = ", ".join(f"{i.key}:{i.pool}" for i in config.inputs)
        print(f"{name:<20} {config.task:<16} target {','.join(config.targets):<20} inputs {inputs}")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The head commands, for `python -m heads` and for `reelfeat`."""
    p = sub.add_parser("train", help="train heads.<name> on its feature stores -> data/heads/<name>/model.pt")
    p.add_argument("head")
    p.add_argument("--out", default=None, help="folder (default: data/heads/<name>)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("stores", help=f"the digests of the stores heads.<name> reads -> data/heads/<name>/{STORES}")
    p.add_argument("head")
    p.add_argument("--out", default=None, help="folder (default: data/heads/<name>)")
    p.set_defaults(run=cmd_stores)

    p = sub.add_parser("evaluate", help="metrics.json and plots/ of a trained head on val and test")
    p.add_argument("head")
    p.add_argument("--out", default=None, help="folder of the trained head (default: data/heads/<name>)")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("predict", help="JSON lines of a trained head's scores and labels for new videos")
    p.add_argument("--head", required=True, help="a key of `heads` in params.yaml")
    p.add_argument("--manifest", default=None, help="a table of videos (as prepare reads)")
    p.add_argument("videos", nargs="*", help="video files")
    p.add_argument("--out", default=None, help="write JSON lines here instead of stdout")
    p.add_argument("--out-dir", default=None, help="folder of the trained head (default: data/heads/<name>)")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("list", help="the heads configured in params.yaml")
    p.set_defaults(run=cmd_list)


def main(argv: list[str] | None = None) -> int:
    parser, sub = command_parser("python -m heads", __doc__)
    add_commands(sub)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    exit_process(main())
