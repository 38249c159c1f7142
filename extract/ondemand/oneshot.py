"""`python -m extract run`: videos in, one backbone's feature store out, in one process, no DVC project.

What video_features users expect: name a model and some videos. The executor's workers decode the
videos (the same `decode_video` the decode stage runs; frames are never written to disk) and this
process batches their inputs through the model (the same `ExtractRunner` the extract stage runs),
overlapped beside a GPU and in turns on the CPU (see `decode_plan`). On Ray the model goes out as
well: each actor decodes the videos it runs (`DecodingReader`), through the features stage's own
pipeline (`build_features`). The store is the one `features` writes, with the same recipe, so a
head or a DVC project can read it; running again into the same folder reuses the videos whose
file and recipe are unchanged, and nothing else is reused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from extract.backbones import VideoInput, input_kind
from extract.core.config import ConfigError
from extract.core.errors import Failure, StepFailed
from extract.core.settings import Settings, cores
from extract.executor import Executor, make_executor, thread_map
from extract.media.views import View
from extract.stages.decode import DecodeJob, biggest_first, decode_video, worker_limit
from extract.stages.manifest import write_csv
from extract.store import BuildSummary, held_sources

if TYPE_CHECKING:  # torch and the model side are imported once the decoders have started
    import torch
    from tqdm import tqdm

    from extract.stages.features import ExtractRunner

T = TypeVar("T")
log = logging.getLogger(__name__)

# Videos decoded per turn on the CPU (bounds the decoded frames held in memory); also the videos
# decoded while the model is built, on any device.
CPU_TURN_VIDEOS = 8


def decode_plan(device: torch.device) -> tuple[int, int | None]:
    """(decoder threads per decode process, videos per turn or None to overlap) beside the model.

    With a GPU the cores are free: one decode process per core, one decoder thread each, overlapped
    with the model, while this process prepares inputs on one torch thread (`torch_threads`).

    On the CPU, decoding and the model take turns at every core, a few videos at a time: sharing
    the cores measured slower than taking turns (16.2 s against 14.7 s on 13 clips, 2 cores), since
    oneDNN's threads wait for the slowest and a core busy decoding slows every convolution. Each
    decoder may then use every core, so that one long video does not hold up its turn on one core
    (a 1080x1920 HEVC TikTok: 4.35 s on one thread, 2.5 s on two).
    """
    if device.type == "cuda":
        return 1, None
    return cores(), CPU_TURN_VIDEOS


def startup_decoders(processes: int) -> int:
    """Decode processes while this process starts (imports torch, builds the model) on one core: the
    other cores, one decoder thread each, so that they do not slow the start-up they hide behind."""
    return max(1, processes - 1) if processes else 0


def frame_decoder(choice: str, device: torch.device, kind: str) -> str | None:
    """The torch device `run` decodes frames on for the `decoder` setting `choice` (NVDEC on the GPU
    the model runs on), or None: the CPU decoders. `auto` takes NVDEC wherever it can."""
    if kind not in ("frames", "clips") or choice == "cpu":
        return None
    if device.type != "cuda":
        if choice == "nvdec":
            raise ConfigError(
                f"--decoder nvdec (REELFEAT_DECODER) decodes on the GPU the model runs on, and this model runs on "
                f"{device}; give a CUDA --device, or --decoder auto or cpu"
            )
        return None
    from extract.media.nvdec import unavailable

    reason = unavailable(device)
    if reason and choice == "nvdec":
        raise ConfigError(f"--decoder nvdec (REELFEAT_DECODER): {reason}; or use --decoder auto or cpu")
    if reason:
        log.info("videos are decoded on the CPU: %s", reason)
        return None
    return str(device)


class DecoderNotes:
    """What decoded `run`'s videos, for the store: the `decoder` attribute, and `decoder_notes`, one
    line per video decoded elsewhere than on the GPU (a file NVDEC refused: why)."""

    def __init__(self, on_device: str | None, previous: dict[str, str]) -> None:
        from extract import media

        self.cpu = media.decoder_version()
        self.device = None
        if on_device:
            import torch

            from extract.media.nvdec import DeviceDecoder

            self.device = DeviceDecoder(torch.device(on_device)).describe()
        self.notes = dict(previous)

    def add(self, vid: str, decoded_by: str | None) -> None:
        self.notes.pop(vid, None)
        if self.device and decoded_by != self.device:
            self.notes[vid] = decoded_by or f"{self.cpu} on the CPU, while the model was built"

    def provenance(self, kept: list[str]) -> dict[str, str]:
        if self.device is None:
            return {"decoder": self.cpu}
        notes = {vid: self.notes[vid] for vid in kept if vid in self.notes}
        return {"decoder": f"{self.device}; else {self.cpu} (decoder_notes)", "decoder_notes": json.dumps(notes)}


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """This process's torch CPU threads set to `count` for the block, then put back.

    Beside a GPU every core runs a decoder, and this process prepares inputs on one thread: with a
    thread per core, each torch operation waits for its slowest thread, which waits for a core
    (measured on the H200 machine, 16 cores, 500 videos: `run` of ResNet50 at 5.1 videos/s, against
    15.9 decoding alone and 135 for the model alone; on 2 cores beside 2 busy decoders one video's
    ResNet50 inputs took 58 ms on 2 threads and 44 ms on 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_one_shot(
    key: str,
    values: dict,
    rows: list[dict[str, str]],
    view: View | None,
    out_dir: str | Path,
    *,
    device: torch.device | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    backend: str | None = None,
    decoder: str | None = None,
    progress: tqdm | None = None,
    settings: Settings | None = None,
) -> BuildSummary:
    """Decode `rows` with `view` and run backbone `key` over them into `out_dir/<key>`.

    `out_dir/manifest.csv` lists the ids given to the videos. Text backbones read the `column` of
    that manifest instead of a view. `settings` default to the environment's; `device`, `workers`
    (decode processes), `backend` and `decoder` override them.

    Beside a model on CUDA, frames are decoded on its GPU's NVDEC engines by `workers` threads of
    this process and handed to the model there (`frame_decoder`); a file NVDEC refuses is decoded on
    the CPU, and the store's `decoder_notes` says why.

    Start-up is hidden: the first videos go to decoders forked before torch is imported, and are
    decoded while this process imports it and builds the model. Only the videos the folder cannot
    hold go this early: those a shard there holds wait for the recipe, known once the model is.
    """
    out_dir = Path(out_dir)
    if not rows:
        raise ConfigError("no videos given: name video files, or a table with --manifest")
    values = {**values, "input": values.get("input") or "(decoded in this run)"}
    model = values.get("model") or key
    kind = input_kind(model)
    settings = (settings or Settings.from_environment()).overridden(workers=workers, backend=backend, decoder=decoder)
    manifest = write_csv(out_dir / "manifest.csv", list(rows[0]), rows)
    if kind == "text":
        from extract.stages.features import run_features

        values = {**values, "input": str(manifest)}
        return run_features(key, values, out_dir / key, device=device, batch_size=batch_size, settings=settings)
    if view is None or view.kind != kind:
        raise ConfigError(f"backbone {model} reads a {kind} view, not {view and view.kind}")
    processes = settings.decode_processes()
    executor = make_executor(settings, processes)
    if executor.remote:  # each actor decodes the videos it runs the model on: both kinds of work go out
        return _run_remote(key, values, rows, view, out_dir, executor, batch_size, settings, progress)
    task_of = {
        row["id"]: DecodeJob(row["id"], row["video"], {"view": view}, 1, settings.ffmpeg_timeout_s) for row in rows
    }
    held = held_sources(out_dir / key)
    new = biggest_first([task_of[row["id"]] for row in rows if (row["id"], row["sha256"]) not in held])
    first, rest = new[:CPU_TURN_VIDEOS], new[CPU_TURN_VIDEOS:]
    early = make_executor(settings, startup_decoders(processes))
    limit = worker_limit(settings.ffmpeg_timeout_s)
    with RunAhead(early.map(decode_video, first, limit), limit=len(first)) as ahead:
        from extract.backbones import backbone_config, default_device
        from extract.stages.features import ExtractWork, decoded_in_run, feature_store, fill_store

        entry, config = backbone_config(key, values, where=f"run {key}")
        device = device or default_device(settings.device)
        threads, turn = decode_plan(device)
        on_device = frame_decoder(settings.decoder, device, kind)
        source = decoded_in_run(view, [row["id"] for row in rows], [row["sha256"] for row in rows])
        # the runner the features stage builds, reading the videos as they are decoded instead of a store
        runner = ExtractWork(entry, config, str(device), batch_size, source).open()
        builder = feature_store(out_dir / key, config, runner.backbone, source, settings)
        previous = json.loads(str(builder.previous_attrs(("decoder_notes",)).get("decoder_notes", "{}")))
        notes = DecoderNotes(on_device, previous)
        later = [dataclasses.replace(task, threads=threads, device=on_device) for task in rest] + [
            dataclasses.replace(task_of[row["id"]], threads=threads, device=on_device)
            for row in rows
            if (row["id"], row["sha256"]) in held and not builder.reusable(row["id"], row["sha256"])
        ]
        if on_device:  # frames stay on the GPU: decoded by threads of this process
            decoded = chain(ahead, thread_map(decode_video, later, processes, limit))
        elif turn is None:
            decoded = chain(ahead, executor.map(decode_video, later, limit))
        else:  # each turn's videos are all decoded before the model runs on them
            decoded = chain(
                ahead,
                (
                    pair
                    for i in range(0, len(later), turn)
                    for pair in list(executor.map(decode_video, later[i : i + turn], limit))
                ),
            )
        hashes = {row["id"]: row["sha256"] for row in rows}
        with torch_threads(1) if turn is None else nullcontext():
            results = runner.run(_inputs(runner, decoded, notes))
            ids = [row["id"] for row in rows]
            return fill_store(
                builder, runner, results, hashes, lambda: runner.provenance() | notes.provenance(ids), progress
            )


def _run_remote(
    key: str,
    values: dict,
    rows: list[dict[str, str]],
    view: View,
    out_dir: Path,
    executor: Executor,
    batch_size: int | None,
    settings: Settings,
    progress: tqdm | None,
) -> BuildSummary:
    """`run` on Ray: the features stage's pipeline, whose actors decode the videos they run."""
    from extract.backbones import backbone_config
    from extract.stages.features import ExtractWork, build_features, decoded_in_run

    entry, config = backbone_config(key, values, where=f"run {key}")
    reader = DecodingReader(view, {row["id"]: row["video"] for row in rows}, settings.ffmpeg_timeout_s)
    source = decoded_in_run(view, [row["id"] for row in rows], [row["sha256"] for row in rows], reader)
    work = ExtractWork(entry, config, "cpu", batch_size, source)
    return build_features(work, executor, out_dir / key, settings, progress)


class RunAhead(Iterator[T]):
    """Results read on a thread, at most `limit` ahead of the reader: the executor's workers go on
    decoding while this process builds its model, instead of each waiting on an unread pipe.

    Leaving the `with` block stops it after the items in flight (the thread closes the iterator, which
    stops its workers), also when the block fails."""

    _END = object()

    def __init__(self, items: Iterator[T], limit: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(limit, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, args=(items,), name="reelfeat-run-ahead", daemon=True)
        self._thread.start()

    def _drain(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    break
        except BaseException as exc:  # handed to the reader, raised there
            self._put((None, exc))
        finally:
            getattr(items, "close", lambda: None)()
        self._put((self._END, None))

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        item, error = self._queue.get()
        if error is not None:
            raise error
        if item is self._END:
            self._queue.put((self._END, None))  # and again for a later read
            raise StopIteration
        return item

    def __enter__(self) -> RunAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@dataclass(frozen=True)
class DecodingReader:
    """`run`'s input on Ray: a video decoded where it is read, with the decode stage's `decode_video`,
    on as many decoder threads as the actor has torch threads (its share of the node's CPUs)."""

    view: View
    paths: dict[str, str]
    timeout: float

    def __call__(self, vid: str) -> VideoInput:
        import torch

        task = DecodeJob(vid, self.paths[vid], {"view": self.view}, torch.get_num_threads(), self.timeout)
        result = decode_video(task)["view"]
        if isinstance(result, Failure):
            raise StepFailed(result)
        frames, times, _info = result
        return VideoInput(vid, frames, times)


def _inputs(
    runner: ExtractRunner, decoded: Iterator[tuple[DecodeJob, object]], notes: DecoderNotes
) -> Iterator[tuple[str, object]]:
    """Each decoded video's model inputs as it arrives, or its failure; what decoded it into `notes`."""
    for task, result in decoded:
        if not isinstance(result, Failure):
            result = result["view"]
        if isinstance(result, Failure):
            yield task.vid, result
            continue
        frames, times, info = result
        notes.add(task.vid, info.get("decoded_by"))
        try:
            yield task.vid, runner.units_for(VideoInput(task.vid, frames, times))
        except StepFailed as failed:
            yield task.vid, failed.failure
