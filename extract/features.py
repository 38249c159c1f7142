"""The extract stage: one backbone over every video, into `data/features/<name>.h5`.

One loop for every backbone. A DataLoader reads each video's input and prepares model inputs in
worker processes while the model runs; inputs from many videos fill each batch; a video's rows
are written once all its inputs are through. Videos whose input is unchanged since the last run
(same source hash, same backbone config and weights) are reused without running the model.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from extract import ray_backend
from extract.backbones import Backbone, BackboneConfig, Units, VideoInput, backbone_config, default_device
from extract.ray_backend import backend_name
from extract.store import BuildSummary, StoreBuilder, StoreReader, checkpoint_seconds
from extract.views import ConfigError

DEFAULT_BATCH = {"frames": 32, "clips": 4, "audio": 16, "text": 64}


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Source:
    """What a backbone reads, video by video: ids, their reuse hashes, failures, and a reader."""

    path: Path
    kind: str  # frames | clips | audio | text
    ids: list[str]
    hashes: list[str]  # per id: the source video's sha256, or the text's
    failures: dict[str, str]
    config: dict = field(default_factory=dict)  # the source store's config (its reuse key)
    row_shape: tuple[int, ...] = ()
    read: Callable[[str], VideoInput] | None = None


def open_source(config: BackboneConfig) -> Source:
    """A decoded store, the prepared manifest (a text column) or a whisper store (its transcripts)."""
    path = Path(config.input)
    if path.suffix == ".csv":
        column = getattr(config, "column", "text")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and column not in rows[0]:
            raise ConfigError(f"{path} has no column {column!r} for backbone {config.model}; set its `column`")
        texts = {row["id"]: row.get(column, "") for row in rows}
        return Source(
            path,
            "text",
            list(texts),
            [text_sha256(t) for t in texts.values()],
            {},
            {"column": column},
            (),
            lambda vid: VideoInput(vid, text=texts[vid]),
        )
    store = StoreReader(path)
    source_config = json.loads(str(store.attrs.get("config", "{}")))
    if "transcript" in store.info_names():  # a whisper store: its transcripts are text input
        texts = dict(zip(store.ids, store.text("transcript"), strict=True))
        return Source(
            path,
            "text",
            list(texts),
            [text_sha256(t) for t in texts.values()],
            store.failures,
            source_config,
            (),
            lambda vid: VideoInput(vid, text=texts[vid]),
        )

    def read(vid: str) -> VideoInput:
        rows, times = store.get(vid)
        return VideoInput(vid, rows, times)

    return Source(
        path,
        str(store.attrs.get("kind", "")),
        store.ids,
        store.source_sha256,
        store.failures,
        source_config,
        store.row_shape,
        read,
    )


class _Prepared(Dataset):
    """Video i's model inputs, made in a loader worker: (id, Units) or (id, error text)."""

    def __init__(self, source: Source, ids: list[str], backbone: Backbone) -> None:
        self.source, self.ids, self.backbone = source, ids, backbone

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[str, VideoInput | None, Units | str]:
        vid = self.ids[i]
        video = self.source.read(vid)
        try:
            return vid, video, self.backbone.units(video)
        except (ValueError, RuntimeError) as exc:  # one video's bad input is its failure, not the run's
            return vid, None, f"preprocessing failed: {' '.join(str(exc).split())}"


@dataclass
class _Pending:
    vid: str
    video: VideoInput
    units: Units
    outputs: list = field(default_factory=list)


def _one_thread(worker_id: int) -> None:
    """Loader workers prepare one video at a time: torch ops there must not claim every core."""
    torch.set_num_threads(1)


def loader_workers(device: torch.device) -> int:
    """Processes preparing inputs while the model runs: REELFEAT_LOADER_WORKERS, else by device.

    On the CPU the model already uses every core, so inputs are prepared inline (measured on 2
    cores: 2 workers gave 70% of model-only throughput, inline 86%); a GPU is fed by the cores.
    """
    if "REELFEAT_LOADER_WORKERS" in os.environ:
        return int(os.environ["REELFEAT_LOADER_WORKERS"])
    return min(8, max(1, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0


def _batches(
    prepared: Iterator[tuple[str, VideoInput | None, Units | str]], backbone: Backbone, batch_size: int
) -> Iterator[tuple[str, object]]:
    """Run the backbone on batches across videos; yield (id, Rows) per finished video, (id, error) per failure."""
    queue: deque[tuple[_Pending, object]] = deque()  # (video, one model input) not yet run
    waiting: deque[_Pending] = deque()  # videos in arrival order, written when all their inputs are through

    def run(count: int) -> None:
        taken = [queue.popleft() for _ in range(count)]
        outputs = backbone.embed(default_collate([item for _, item in taken])).cpu().numpy()
        for (owner, _), out in zip(taken, outputs, strict=True):
            owner.outputs.append(out)

    def finished() -> Iterator[tuple[str, object]]:
        while waiting and len(waiting[0].outputs) == len(waiting[0].units.items):
            done = waiting.popleft()
            yield done.vid, backbone.assemble(done.video, done.outputs, done.units)

    for vid, video, units in prepared:
        if isinstance(units, str):
            yield vid, units
            continue
        pending = _Pending(vid, video, units)
        waiting.append(pending)
        queue.extend((pending, item) for item in units.items)
        while len(queue) >= batch_size:
            run(batch_size)
        yield from finished()
    while queue:
        run(min(batch_size, len(queue)))
    yield from finished()


def run_features(
    key: str,
    values: dict,
    out_path: str | Path,
    *,
    device: torch.device | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: tqdm | None = None,
    backend: str | None = None,
) -> BuildSummary:
    """Extract `backbones.<key>` into out_path, reusing unchanged videos' rows."""
    entry, config = backbone_config(key, values)
    source = open_source(config)
    if source.kind != entry.input_kind:
        raise ConfigError(
            f"params.yaml backbones.{key}: {config.model} reads {entry.input_kind}, "
            f"but {source.path} holds {source.kind or 'something else'}"
        )
    ray = backend_name(backend) == "ray"
    # under Ray the actors run the model; the driver's copy only tells widths, weights and columns
    device = torch.device("cpu") if ray else device or default_device()
    backbone = entry.build(config, device)
    backbone.check_input(source.row_shape, source.config)
    weights = backbone.weights.describe()
    reuse_key = json.dumps(
        {"backbone": config.__dict__, "weights_sha256": weights["sha256"], "input": source.config},
        sort_keys=True,
        default=str,
    )
    builder = StoreBuilder(
        out_path,
        config=reuse_key,
        row_shape=(backbone.dim,),
        dtype=config.dtype,
        attrs={
            "backbone": config.model,
            "kind": "features",
            "input": str(source.path),
            "weights": json.dumps(weights, sort_keys=True),
            "preprocessing": json.dumps(backbone.preprocessing(), sort_keys=True, default=str),
            "versions": library_versions(),
        },
        info_dtypes=backbone.columns,
        checkpoint_s=checkpoint_seconds(),
    )
    hashes = dict(zip(source.ids, source.hashes, strict=True))
    todo = [vid for vid in source.ids if not builder.reusable(vid, hashes[vid])]
    if progress is not None:
        progress.reset(total=len(todo))
    batch_size = batch_size or DEFAULT_BATCH[entry.input_kind]
    if ray:
        results = ray_backend.extract_results(key, values, todo, batch_size)
    else:
        workers = loader_workers(device) if workers is None else workers
        loader = DataLoader(
            _Prepared(source, todo, backbone),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=4 if workers else None,
            worker_init_fn=_one_thread,
            pin_memory=device.type == "cuda",
        )
        results = _batches(iter(loader), backbone, batch_size)
    for vid, result in results:
        if isinstance(result, str):
            builder.add_failure(vid, result)
        else:
            builder.add(vid, hashes[vid], result.feats.astype(config.dtype), result.timestamps, result.columns)
        if progress is not None:
            progress.update(1)
    for vid, error in source.failures.items():
        builder.add_failure(vid, f"no input ({source.path}: {error})")
    return builder.finish([(vid, hashes[vid]) for vid in source.ids])


def library_versions() -> str:
    """Versions of the libraries that shape the features, as provenance."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "torchvision", "transformers", "openai-whisper", "torchvggish", "numpy", "h5py"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return json.dumps(found, sort_keys=True)
