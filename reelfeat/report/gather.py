"""What the report shows, read and computed in one place: the heads' reviews (`review.py`), the worst
videos' frames and words, each mapped store's 2-D map and kNN label probe, the stores' facts and
failures, and the last run's stage times. `page.py` renders it and reads nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.core.errors import UserError
from extract.core.runlog import read_runs
from extract.stages.manifest import read_prepared
from extract.store import StoreError, StoreReader
from reelfeat.report.config import ReportConfig
from reelfeat.report.review import HeadReview, review_head


@dataclass
class VideoFacts:
    """A worst video as the page shows it: a strip of its decoded frames (where the view has them)."""

    frames: np.ndarray | None = None  # (N, H, W, 3) uint8, at most strip_frames spread over the video
    times: np.ndarray | None = None  # their seconds
    caption: str = ""
    transcript: str = ""


@dataclass
class StoreMap:
    """A store's t-SNE map of its videos' unit rows, and how often a video's 5 nearest share its label."""

    store: str
    xy: np.ndarray | None = None
    labels: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # train-test duplicates, as points of xy
    agreement: dict[str, float] = field(default_factory=dict)
    problem: str = ""  # why there is no map


@dataclass
class StoreFacts:
    path: str
    videos: int
    failures: int
    rows: int
    row_shape: tuple[int, ...]
    bytes_per_video: int
    backbone: object
    weights: str
    preprocessing: object


@dataclass
class ReportData:
    config: ReportConfig
    rows: dict[str, dict]  # the manifest, by id
    reviews: list[HeadReview]
    failed: dict[str, str]  # heads that could not be reviewed, and why
    videos: dict[str, VideoFacts]  # the worst videos of every head
    has_transcripts: bool
    maps: list[StoreMap]
    stores: list[StoreFacts]
    store_failures: list[tuple[str, str, str]]  # (store, video or "the whole store", reason)
    runs: list[dict]


def gather(config: ReportConfig) -> ReportData:
    rows = {row["id"]: row for row in read_prepared(config.manifest)}
    reviews, failed = [], {}
    for head_dir in sorted(Path(config.heads).glob("*/model.pt")):
        if not (head_dir.parent / "metrics.json").is_file():
            continue  # trained, not yet evaluated: its stage has not finished
        try:
            reviews.append(review_head(head_dir.parent, config.worst))
        except UserError as exc:  # one head whose stores changed does not hide the others
            failed[head_dir.parent.name] = str(exc)
    transcripts = _transcripts(config.transcripts)
    frames = _open(config.frames)
    worst = {mistake.vid for review in reviews for mistake in review.worst}
    videos = {vid: _video(vid, rows.get(vid, {}), frames, transcripts, config) for vid in sorted(worst)}
    stores, store_failures = _stores(config.stores)
    runs = [run for run in read_runs(config.runs) if run["stage"] != "report"]  # a page cannot time its own making
    maps = [_map(store, config, rows) for store in config.maps]
    return ReportData(config, rows, reviews, failed, videos, bool(transcripts), maps, stores, store_failures, runs)


def _open(path: str | None) -> StoreReader | None:
    if not path or not Path(path).exists():
        return None
    return StoreReader(path)


def _transcripts(path: str | None) -> dict[str, str]:
    reader = _open(path)
    if reader is None or "transcript" not in reader.info_names():
        return {}
    return dict(zip(reader.ids, reader.text("transcript"), strict=True))


def _video(
    vid: str, row: dict, frames: StoreReader | None, transcripts: dict[str, str], config: ReportConfig
) -> VideoFacts:
    facts = VideoFacts(caption=row.get(config.caption, ""), transcript=transcripts.get(vid, ""))
    if frames is not None and vid in frames:
        times = frames.timestamps(vid)
        if len(frames.row_shape) == 3 and len(times):  # a frames view: read only the frames the strip shows
            keep = np.unique(np.linspace(0, len(times) - 1, min(config.strip_frames, len(times))).round().astype(int))
            facts.frames, facts.times = frames.read(vid, keep), times[keep].astype(np.float64)
    return facts


def _map(store: str, config: ReportConfig, rows: dict[str, dict]) -> StoreMap:
    try:
        return _mapped(store, config, rows)
    except (UserError, FileNotFoundError, ValueError) as exc:  # one store's problem leaves the others' maps
        return StoreMap(store, problem=str(exc))


def _mapped(store: str, config: ReportConfig, rows: dict[str, dict]) -> StoreMap:
    from sklearn.manifold import TSNE

    from extract.analysis.insight import leaking_groups
    from extract.analysis.knn import knn_graph, unit_rows

    reader = StoreReader(store)
    units, has_rows = unit_rows(reader)
    ids = [vid for vid, has in zip(reader.ids, has_rows, strict=True) if has]
    units = units[has_rows]
    if len(ids) < 4:
        return StoreMap(store, problem=f"{len(ids)} videos with rows; a map needs at least 4")
    label = [str(rows.get(vid, {}).get(config.map_label or "split", "")) for vid in ids]
    neighbours, _, _ = knn_graph(units, min(5, len(ids) - 1))
    shared = np.array(label)[neighbours] == np.array(label)[:, None]
    agreement = {name: float(shared[np.array(label) == name].mean()) for name in sorted(set(label))}
    shown = np.arange(len(ids))
    if len(ids) > config.map_limit:
        shown = np.sort(np.random.default_rng(0).choice(len(ids), config.map_limit, replace=False))
    xy = TSNE(2, perplexity=min(30.0, (len(shown) - 1) / 3), init="pca", random_state=0).fit_transform(units[shown])
    where = {ids[k]: n for n, k in enumerate(shown)}
    pairs = [
        (where[a], where[b])
        for group in leaking_groups(Path(config.insight))
        for a in group["train"]
        for b in group["test"]
        if a in where and b in where
    ]
    splits = [str(rows.get(ids[k], {}).get("split", "")) for k in shown]
    return StoreMap(store, xy, [label[k] for k in shown], splits, pairs, agreement)


def _stores(folders: tuple[str, ...]) -> tuple[list[StoreFacts], list[tuple[str, str, str]]]:
    stores, failures = [], []
    for folder in folders:
        for index in sorted(Path(folder).glob("*/index.json")):
            try:
                reader = StoreReader(index.parent)
            except StoreError as exc:
                failures.append((str(index.parent), "the whole store", str(exc)))
                continue
            recipe = reader.recipe
            weights = recipe.weights or {}
            weights_text = "—"
            if weights:
                origin = weights.get("name") or f"a local {weights.get('source', 'file')}"
                weights_text = f"{origin}, sha256 {str(weights.get('sha256', ''))[:12]}"
            stores.append(
                StoreFacts(
                    path=str(reader.path),
                    videos=len(reader),
                    failures=len(reader.failures),
                    rows=reader.num_rows,
                    row_shape=reader.row_shape,
                    bytes_per_video=sum(facts["bytes"] for facts in reader.shards.values()) // max(1, len(reader)),
                    backbone=recipe.backbone or recipe.view or recipe.to_dict(),
                    weights=weights_text,
                    preprocessing="—" if recipe.preprocessing is None else recipe.preprocessing,
                )
            )
            failures += [(str(reader.path), vid, why) for vid, why in reader.failures.items()]
    return stores, failures
