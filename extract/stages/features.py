"""The extract stage: one backbone over every video, into the store `data/features/<name>`.

One loop for every backbone. The executor builds the model where it runs (`ExtractWork.open`);
each video's input is read and turned into model inputs (in worker processes where there are
some), inputs from many videos fill each batch, and a video's rows are written once all its inputs
are through. Every step of a video ends in rows or in a recorded failure: reading the input,
preparing inputs, the forward pass (a failing batch is split until the video that breaks it is
found), assembling rows. Videos whose input is unchanged since the last run (same source hash,
same recipe) are reused without running the model.

A feature store carries its recipe (see `extract.core.recipe`): the backbone's config, the weights,
the preprocessing and the recipe of its input, paths left out. Its contract is the reuse key.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from extract.backbones import (
    Backbone,
    BackboneConfig,
    BackboneEntry,
    Rows,
    Units,
    VideoInput,
    backbone_config,
    default_device,
)
from extract.core.config import ConfigError
from extract.core.errors import Failure, StepFailed, failure_of, step
from extract.core.recipe import Recipe
from extract.core.settings import Settings
from extract.executor import Executor, make_executor
from extract.media.views import View, view_config_json
from extract.store import BuildSummary, StoreBuilder, StoreReader

log = logging.getLogger(__name__)

# Inputs per batch by input kind. On the CPU, ResNet50 ran 25% faster per frame in batches of 4-8
# than of 32 (2-core EPYC: 51-55 against 68 ms a frame; big batches fall out of cache); a GPU wants more.
DEFAULT_BATCH = {"frames": 32, "clips": 4, "audio": 16, "text": 64}
CPU_BATCH = {**DEFAULT_BATCH, "frames": 8}
# store attributes set from `ExtractRunner.provenance`
PROVENANCE = ("device", "precision", "runtime", "int8_min_cosine", "batch_size", "decoder", "decoder_notes")


def default_batch(kind: str, device: torch.device) -> int:
    return (CPU_BATCH if device.type == "cpu" else DEFAULT_BATCH)[kind]


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
    recipe: Recipe = field(default_factory=Recipe)  # how the input was made
    row_shape: tuple[int, ...] = ()
    read: Callable[[str], VideoInput] | None = None


def _text_source(path: Path, texts: dict[str, str], failures: dict[str, str], recipe: Recipe) -> Source:
    return Source(
        path,
        "text",
        list(texts),
        [text_sha256(t) for t in texts.values()],
        failures,
        recipe,
        (),
        lambda vid: VideoInput(vid, text=texts[vid]),
    )


def open_source(config: BackboneConfig) -> Source:
    """A decoded store, the prepared manifest (a text column) or a whisper store (its transcripts)."""
    path = Path(config.input)
    if path.suffix == ".csv":
        column = getattr(config, "column", "text")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and column not in rows[0]:
            raise ConfigError(f"{path} has no column {column!r} for backbone {config.model}; set its `column`")
        return _text_source(path, {row["id"]: row.get(column, "") for row in rows}, {}, Recipe(column=column))
    store = StoreReader(path)
    if "transcript" in store.info_names():  # a whisper store: its transcripts are text input
        texts = dict(zip(store.ids, store.text("transcript"), strict=True))
        return _text_source(path, texts, store.failures, Recipe(transcripts=store.recipe))

    def read(vid: str) -> VideoInput:
        rows, times = store.get(vid)
        return VideoInput(vid, rows, times)

    return Source(
        path,
        str(store.attrs.get("kind", "")),
        store.ids,
        store.source_sha256,
        store.failures,
        store.recipe,
        store.row_shape,
        read,
    )


def decoded_in_run(
    view: View, ids: list[str], hashes: list[str], read: Callable[[str], VideoInput] | None = None
) -> Source:
    """The source of `run`: videos decoded as they go, never stored, with the recipe a decoded store
    of the same view has (so the feature store's recipe is the one the stages write). `read`
    decodes one video where the model runs (on Ray); locally the decoders hand the videos over."""
    return Source(
        Path(f"{view.kind} view, decoded in this run"),
        view.kind,
        ids,
        hashes,
        {},
        Recipe.of(json.loads(view_config_json(view))),
        view.row_shape(),
        read,
    )


def backbone_recipe(config: BackboneConfig, backbone: Backbone, source: Source) -> Recipe:
    """The recipe of a backbone's rows (see `extract.core.recipe`)."""
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    settings = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in config.not_in_recipe and not (k in config.in_recipe_when_set and v == defaults[k])
    }
    weights = backbone.weights.describe()
    if weights["source"] == "path":
        weights["name"] = None  # a local file: its sha256 says what it is, its path is this machine's
    return Recipe(
        backbone=settings,
        weights=weights,
        preprocessing=json.loads(json.dumps(backbone.preprocessing(), sort_keys=True, default=str)),
        input=source.recipe,
    )


@dataclass
class _Pending:
    """One video whose inputs are queued for the model."""

    vid: str
    video: VideoInput
    units: Units
    outputs: list = field(default_factory=list)
    received: int = 0  # inputs through the model, failed ones included
    failure: Failure | None = None

    @property
    def done(self) -> bool:
        return self.received == len(self.units.items)


class ExtractRunner:
    """A backbone on its device and the source it reads: prepares, batches and runs videos."""

    def __init__(self, backbone: Backbone, source: Source, batch_size: int) -> None:
        self.backbone, self.source, self.batch_size = backbone, source, batch_size

    def provenance(self) -> dict[str, str | int]:
        """Where and how the model ran: recorded in the store, never part of its reuse key."""
        return {
            "device": self.backbone.device.type,
            **self.backbone.provenance(),  # precision (what `auto` resolved to here) and runtime
            "batch_size": self.batch_size,  # after any halving for GPU memory
        }

    def prepare(self, vid: str) -> tuple[VideoInput, Units]:
        """One video's model inputs (in a worker process where there are some)."""
        with step("reading the input"):
            video = self.source.read(vid)
        return self.units_for(video)

    def units_for(self, video: VideoInput) -> tuple[VideoInput, Units]:
        with step("preparing inputs"):
            return video, self.backbone.units(video)

    def run(self, prepared: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Rows | Failure]]:
        """Batches across videos; (id, Rows or Failure) per video, in the order the videos came in."""
        queue: deque[tuple[_Pending, object]] = deque()  # (video, one model input) not yet run
        waiting: deque[_Pending] = deque()  # videos in arrival order, finished when all their inputs are through

        def finished() -> Iterator[tuple[str, Rows | Failure]]:
            ready = []
            while waiting and waiting[0].done:
                ready.append(waiting.popleft())
            # videos finished together are handed over together (Whisper decodes their transcripts in one batch)
            self.backbone.before_assemble(
                [(done.video, done.outputs, done.units) for done in ready if not done.failure]
            )
            for done in ready:
                yield done.vid, done.failure or self._assemble(done)

        for vid, item in prepared:
            if isinstance(item, Failure):
                yield vid, item
                continue
            video, units = item
            pending = _Pending(vid, video, units)
            waiting.append(pending)
            queue.extend((pending, unit) for unit in units.items)
            while len(queue) >= self.batch_size:
                self._forward([queue.popleft() for _ in range(self.batch_size)])
            yield from finished()
        while queue:
            self._forward([queue.popleft() for _ in range(min(self.batch_size, len(queue)))])
        yield from finished()

    def _forward(self, taken: list[tuple[_Pending, object]]) -> None:
        """Run one batch; if it raises, split it until the input that raises is alone, and fail its video.

        Out of GPU memory, the batch size itself is halved for the rest of the run (and recorded in
        the store as `batch_size`), so one big batch does not fail every later one too."""
        try:
            outputs = self.backbone.embed(default_collate([unit for _, unit in taken])).cpu().numpy()
        except Exception as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
                if 1 < len(taken) <= self.batch_size:
                    self.batch_size = len(taken) // 2
                    log.warning(
                        "%s ran out of GPU memory at a batch of %d; going on with batches of %d",
                        self.backbone.config.model,
                        len(taken),
                        self.batch_size,
                    )
            if len(taken) > 1:
                half = len(taken) // 2
                self._forward(taken[:half])
                self._forward(taken[half:])
                return
            outputs = None
            error = failure_of("forward pass", exc)
        for i, (owner, _) in enumerate(taken):
            owner.received += 1
            if outputs is None:
                owner.failure = owner.failure or error
            elif not np.isfinite(outputs[i]).all():
                owner.failure = owner.failure or Failure(
                    "forward pass: the model returned NaN or infinite values (a broken input, or an overflow in its "
                    "compute precision: try precision: float32)"
                )
            else:
                owner.outputs.append(outputs[i])

    def _assemble(self, done: _Pending) -> Rows | Failure:
        try:
            with step("assembling rows"):
                return self.backbone.assemble(done.video, done.outputs, done.units)
        except StepFailed as failed:
            return failed.failure


@dataclass
class ExtractWork:
    """What a model process needs to build the runner: picklable, built once per process."""

    entry: BackboneEntry
    config: BackboneConfig
    device: str
    batch_size: int | None  # None: the default for the input kind on the device where the model runs
    source: Source | None = None  # None: the backbone's configured input (`open_source`)
    _runner: ExtractRunner | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_runner": None}  # a model travels as instructions, never as weights

    def open(self) -> ExtractRunner:
        if self._runner is None:
            config = self.config
            source = self.source or open_source(config)
            if source.kind != self.entry.input_kind:
                raise ConfigError(
                    f"backbone {config.model} reads {self.entry.input_kind}, "
                    f"but {source.path} holds {source.kind or 'something else'}: set its `input`"
                )
            backbone = self.entry.build(config, torch.device(self.device))
            backbone.check_input(source.row_shape, source.recipe)
            batch = self.batch_size or default_batch(self.entry.input_kind, torch.device(self.device))
            self._runner = ExtractRunner(backbone, source, batch)
        return self._runner

    def on_device(self, device: str) -> ExtractWork:
        return dataclasses.replace(self, device=device, _runner=None)

    def init_worker(self, threads: int) -> None:
        torch.set_num_threads(threads)  # loader workers prepare one video at a time: not every core each


def run_features(
    key: str,
    values: dict,
    out_path: str | Path,
    *,
    device: torch.device | None = None,
    batch_size: int | None = None,
    loader_workers: int | None = None,
    progress: tqdm | None = None,
    backend: str | None = None,
    section: str = "backbones",
    settings: Settings | None = None,
) -> BuildSummary:
    """Extract `<section>.<key>` into out_path, reusing unchanged videos' rows.

    `settings` default to the environment's (`Settings.from_environment`); `device`, `loader_workers`
    (the input-preparing processes) and `backend` override them."""
    entry, config = backbone_config(key, values, section)
    settings = (settings or Settings.from_environment()).overridden(loader_workers=loader_workers, backend=backend)
    device = device or default_device(settings.device)
    executor = make_executor(settings, settings.loader_processes(device.type))
    # remote executors run the model elsewhere; this copy only tells widths, weights and columns
    work = ExtractWork(entry, config, "cpu" if executor.remote else str(device), batch_size)
    return build_features(work, executor, out_path, settings, progress)


def build_features(
    work: ExtractWork, executor: Executor, out_path: str | Path, settings: Settings, progress: tqdm | None = None
) -> BuildSummary:
    """The store of `work`'s backbone over its source, the model work sent through `executor`: the
    pipeline of the features stage, and of `run` on Ray (whose source decodes each video where the
    model runs). Videos whose source and recipe are unchanged are reused."""
    runner = work.open()
    builder = feature_store(out_path, work.config, runner.backbone, runner.source, settings)
    source = runner.source
    hashes = dict(zip(source.ids, source.hashes, strict=True))
    todo = [vid for vid in source.ids if not builder.reusable(vid, hashes[vid])]
    if progress is not None:
        progress.reset(total=len(todo))
    for vid, error in source.failures.items():
        builder.add_failure(vid, f"no input ({source.path}: {error})")
    # how the model ran, as the processes that ran it report (a Ray worker's GPU, not this driver's CPU)
    results = executor.map_model(work, todo)
    return fill_store(builder, runner, results, hashes, lambda: executor.model_provenance, progress)


def fill_store(
    builder: StoreBuilder,
    runner: ExtractRunner,
    results: Iterable[tuple[str, Rows | Failure]],
    hashes: dict[str, str],
    ran_as: Callable[[], dict],
    progress: tqdm | None = None,
) -> BuildSummary:
    """The one extraction loop's end, for `features`, `run` and the stores made for new videos: each
    video's rows (or failure) into the store as they come, then how the model ran, as `ran_as()`
    reports once every result is in. When no rows were made (nothing to do, or only failures), the
    store keeps what it recorded before (or, new, what this runner would have run as). The store's
    videos are `hashes`' (id -> sha256), in order."""
    ran = 0
    for vid, result in results:
        store_result(builder, vid, hashes[vid], result, runner.backbone.config.dtype)
        ran += not isinstance(result, Failure)
        if progress is not None:
            progress.update(1)
    provenance = (ran_as() if ran else {}) or builder.previous_attrs(PROVENANCE) or runner.provenance()
    for key, value in provenance.items():
        builder.set_attr(key, value)
    return builder.finish(list(hashes.items()))


def feature_store(
    out_path: str | Path, config: BackboneConfig, backbone: Backbone, source: Source, settings: Settings
) -> StoreBuilder:
    """The builder of a backbone's feature store: its recipe is the reuse key (see `extract.core.recipe`).
    How the model ran (`PROVENANCE`) is set once it has run."""
    recipe = backbone_recipe(config, backbone, source)
    return StoreBuilder(
        out_path,
        config=recipe.key,
        row_shape=(backbone.dim,),
        dtype=config.dtype,
        attrs={
            "backbone": config.model,
            "kind": "features",
            "input": str(source.path),
            "recipe": json.dumps(recipe.to_dict(), sort_keys=True),
            "versions": library_versions(),
        },
        info_dtypes=backbone.columns,
        checkpoint_s=settings.checkpoint_s,
        shard_bytes=settings.shard_bytes,
    )


def store_result(builder: StoreBuilder, vid: str, sha256: str, result: Rows | Failure, dtype: str) -> None:
    """A video's rows into the store, or its failure."""
    stored = result if isinstance(result, Failure) else _stored(result, dtype)
    if isinstance(stored, Failure):
        builder.add_failure(vid, str(stored))
    else:
        builder.add(vid, sha256, stored.feats, stored.timestamps, stored.columns)


def _stored(rows: Rows, dtype: str) -> Rows | Failure:
    """Rows in the store's dtype. A store never keeps NaN or Inf: the forward pass fails a video whose
    outputs hold them, this its assembled rows (and values float16 cannot hold)."""
    if not np.isfinite(rows.feats).all():
        bad = int((~np.isfinite(rows.feats)).any(axis=tuple(range(1, rows.feats.ndim))).sum())
        return Failure(f"storing rows: {bad} of its {len(rows.feats)} rows hold NaN or Inf, which a store never keeps")
    feats = rows.feats.astype(dtype)
    if not np.isfinite(feats).all():
        return Failure(f"storing rows: values beyond {dtype}'s range; set this backbone's dtype: float32")
    return dataclasses.replace(rows, feats=feats)


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
