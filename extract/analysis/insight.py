"""What a feature store says about the dataset: its duplicates, and each video's nearest neighbours.

Short-video datasets are full of reposts, crops, re-encodes and watermarked copies; a copy in train
and another in test inflates every metric a head reports. `insight@<name>` finds, on one feature
store:
- exact duplicates: videos with the same source sha256;
- near duplicates: pairs whose pooled rows (the mean row, L2-normalised) have a cosine at or above
  `threshold`;
and joins both into groups (connected components). It writes `duplicates.csv` (group, id, split,
nearest, cosine, exact) and `summary.json` (the counts, and the groups that straddle train and
test: leakage). Heads then report their test metrics without the test videos that have a copy in
train too (`leaking_test_ids`).

The search is exact: the unit rows are multiplied a block of queries at a time (so memory stays
at a block times the store), on every core, in float32.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.core import project
from extract.core.config import ConfigError, build_config
from extract.core.files import atomic_write, write_text
from extract.stages.manifest import read_prepared
from extract.store import StoreReader

INSIGHT = project.INSIGHT
QUERY_BLOCK = 2048  # rows per matrix product: 2048 x 10^5 float32 cosines are 0.8 GB, the one buffer
# measured on a trained Whisper tiny.en store: at it no group joins two clips and every copy of a real clip
# joins its original (bench/duplicates.py, README "Duplicates and leakage"); for visual stores it is the value
# common for trained CLIP embeddings, unmeasured here (random weights separate nothing)
DEFAULT_THRESHOLD = 0.95
CROWDED = 0.5  # one group holding more than this share of a store's videos is warned about


@dataclass(frozen=True)
class InsightConfig:
    """Keys of `insight.<name>` in params.yaml."""

    store: str  # a feature store folder: data/features/<backbone>
    threshold: float = DEFAULT_THRESHOLD  # near duplicates: cosine of the pooled rows at or above it
    manifest: str = str(project.MANIFEST)  # the splits

    def validate(self, where: str) -> None:
        if not self.store:
            raise ConfigError(f"{where}.store: name a feature store, e.g. data/features/resnet50")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"{where}.threshold: {self.threshold} is not in (0, 1]")


def insight_config(name: str, values: dict) -> InsightConfig:
    return build_config(InsightConfig, values, f"params.yaml insight.{name}")


def unit_rows(reader: StoreReader) -> tuple[np.ndarray, np.ndarray]:
    """(the videos' mean rows L2-normalised, float32; whether each video has rows)."""
    if len(reader.row_shape) != 1:
        raise ConfigError(f"{reader.path} holds rows of shape {reader.row_shape}, not features: name data/features/*")
    pooled = reader.pooled()
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    has_rows = (reader.row_counts > 0) & (norms[:, 0] > 0)
    return np.divide(pooled, norms, out=np.zeros_like(pooled), where=norms > 0), has_rows


def knn_graph(
    units: np.ndarray, k: int, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every row's k nearest other rows, best first, exactly: (indices, cosines), each (rows, k); and,
    with `threshold`, (i, j, cosine) of every pair i < j at or above it.

    The cosine matrix is symmetric, so each block of rows is multiplied only with the rows from its
    own onwards (half the products): a block's rows take their candidates from that strip, and the
    rows after it take theirs from its transpose; each row keeps its best k as the blocks go."""
    import torch

    n = len(units)
    k = max(0, min(k, n - 1))
    table = torch.from_numpy(np.ascontiguousarray(units, np.float32))
    best = torch.full((n, k), -torch.inf)
    best_index = torch.full((n, k), -1, dtype=torch.long)
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    flat = torch.empty(min(QUERY_BLOCK, n) * n)  # one buffer for every block's products
    for start in range(0, n, QUERY_BLOCK):
        end = min(start + QUERY_BLOCK, n)
        strip = flat[: (end - start) * (n - start)].view(end - start, n - start)
        torch.matmul(table[start:end], table[start:].T, out=strip)
        own = torch.arange(end - start)
        strip[own, own] = -torch.inf  # a row is not its own neighbour
        if threshold is not None:
            rows, cols = torch.nonzero(strip >= threshold, as_tuple=True)
            upper = cols > rows  # within the block, each pair once
            rows, cols = rows[upper], cols[upper]
            pairs.append(((rows + start).numpy(), (cols + start).numpy(), strip[rows, cols].numpy()))
        if not k:
            continue
        found = torch.topk(strip, min(k, n - start), dim=1)
        _merge(best, best_index, start, end, found.values, found.indices + start, k)
        if end < n:  # the later rows' candidates among this block's rows
            later = strip[:, end - start :]
            if start == 0 or end - start < k:  # their first k candidates: every value counts
                found = torch.topk(later.T.contiguous(), min(k, end - start), dim=1)
                _merge(best, best_index, end, n, found.values, found.indices + start, k)
            else:  # only values above a row's k-th best can enter it: few, found in one pass
                rows, cols = torch.nonzero(later > best[end:, -1], as_tuple=True)
                if len(cols):
                    _merge_sparse(best, best_index, end, cols, later[rows, cols], rows + start, k)
    joined = tuple(np.concatenate(part) for part in zip(*pairs, strict=True)) if pairs else ()
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return best_index.numpy(), best.numpy(), joined or empty  # type: ignore[return-value]


def _merge(best, best_index, start: int, end: int, values, indices, k: int) -> None:
    """Keep rows start..end's best k of what they had and the new candidates."""
    import torch

    values = torch.cat([best[start:end], values], dim=1)
    indices = torch.cat([best_index[start:end], indices], dim=1)
    top = torch.topk(values, k, dim=1)
    best[start:end] = top.values
    best_index[start:end] = torch.gather(indices, 1, top.indices)


def _merge_sparse(best, best_index, offset: int, targets, values, indices, k: int) -> None:
    """Merge candidates given one by one (row `offset + targets[i]` may take `indices[i]` at `values[i]`)."""
    import torch

    order = torch.argsort(targets, stable=True)
    targets, values, indices = targets[order], values[order], indices[order]
    rows, counts = torch.unique_consecutive(targets, return_counts=True)
    slot = torch.arange(len(targets)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    group = torch.repeat_interleave(torch.arange(len(rows)), counts)
    dense = torch.full((len(rows), int(counts.max())), -torch.inf)
    dense_index = torch.full(dense.shape, -1, dtype=torch.long)
    dense[group, slot], dense_index[group, slot] = values, indices
    rows = rows + offset
    merged = torch.cat([best[rows], dense], dim=1)
    merged_index = torch.cat([best_index[rows], dense_index], dim=1)
    top = torch.topk(merged, k, dim=1)
    best[rows] = top.values
    best_index[rows] = torch.gather(merged_index, 1, top.indices)


def nearest(units: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosines), each (len(queries), k): the k rows of `units` nearest each unit vector of
    `queries`, best first, exactly, a block of queries at a time."""
    import torch

    table = torch.from_numpy(np.ascontiguousarray(units, np.float32))
    k = min(k, len(units))
    found_index, found_cosine = [np.zeros((0, k), np.int64)], [np.zeros((0, k), np.float32)]
    for start in range(0, len(queries), QUERY_BLOCK):
        block = torch.from_numpy(np.ascontiguousarray(queries[start : start + QUERY_BLOCK], np.float32))
        best = torch.topk(block @ table.T, k, dim=1)
        found_index.append(best.indices.numpy())
        found_cosine.append(best.values.numpy())
    return np.concatenate(found_index), np.concatenate(found_cosine)


@dataclass
class Duplicates:
    ids: list[str]
    group: np.ndarray  # (videos,) group number, -1 for a video without a duplicate
    exact: np.ndarray  # (videos,) bool: another video has its source sha256
    nearest: np.ndarray  # (videos,) its nearest video (row number), -1 without rows
    cosine: np.ndarray  # (videos,) the cosine to it


def find_duplicates(reader: StoreReader, threshold: float) -> Duplicates:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = reader.ids
    units, has_rows = unit_rows(reader)
    rows = np.flatnonzero(has_rows)
    near_index, near_cosine, (i, j, _) = knn_graph(units[rows], 1, threshold)
    closest = np.full(len(ids), -1)
    cosine = np.full(len(ids), np.nan, np.float32)
    if near_index.shape[1]:
        closest[rows] = rows[near_index[:, 0]]
        cosine[rows] = near_cosine[:, 0]
    edges = [(rows[i], rows[j])]
    by_sha: dict[str, list[int]] = {}
    for position, sha in enumerate(reader.source_sha256):
        if sha:
            by_sha.setdefault(sha, []).append(position)
    exact = np.zeros(len(ids), bool)
    for same in by_sha.values():
        if len(same) > 1:
            exact[same] = True
            edges.append((np.array(same[:-1]), np.array(same[1:])))
    a = np.concatenate([edge[0] for edge in edges]).astype(np.int64)
    b = np.concatenate([edge[1] for edge in edges]).astype(np.int64)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    group = np.full(len(ids), -1)
    in_group = sizes[component] > 1
    # groups numbered in order of their first video, so the file is the same on every run
    _, first = np.unique(component[in_group], return_index=True)
    order = {c: n for n, c in enumerate(component[in_group][np.sort(first)])}
    group[in_group] = [order[c] for c in component[in_group]]
    return Duplicates(ids, group, exact, closest, cosine)


def run_insight(config: InsightConfig, out: Path) -> dict:
    """Write duplicates.csv and summary.json into `out`; returns the summary."""
    reader = StoreReader(config.store)
    if len(reader) < 2:
        raise ConfigError(f"{config.store} holds {len(reader)} video(s): duplicates need at least two")
    split = {row["id"]: row.get("split", "") for row in read_prepared(config.manifest)}
    found = find_duplicates(reader, config.threshold)
    out.mkdir(parents=True, exist_ok=True)
    members: dict[int, list[int]] = {}
    for position in np.flatnonzero(found.group >= 0):
        members.setdefault(int(found.group[position]), []).append(int(position))
    with atomic_write(out / "duplicates.csv", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "id", "split", "nearest", "cosine", "exact"])
        for number, positions in sorted(members.items()):
            for position in positions:
                vid = found.ids[position]
                near = found.ids[found.nearest[position]] if found.nearest[position] >= 0 else ""
                cosine = "" if np.isnan(found.cosine[position]) else f"{found.cosine[position]:.4f}"
                writer.writerow([number, vid, split.get(vid, ""), near, cosine, int(found.exact[position])])
    groups = {
        number: [(found.ids[p], split.get(found.ids[p], "")) for p in positions]
        for number, positions in members.items()
    }
    leaking = [
        {"group": number, "ids": [vid for vid, _ in named]}
        for number, named in sorted(groups.items())
        if {"train", "test"} <= {part for _, part in named}
    ]
    summary = {
        "store": config.store,
        "threshold": config.threshold,
        "videos": len(found.ids),
        "groups": len(members),
        "videos_in_groups": int((found.group >= 0).sum()),
        "exact_duplicates": int(found.exact.sum()),
        "leaking_groups": len(leaking),
        "leaking_test_videos": len(leaking_tests(list(groups.values()))),
        "largest_group": max(map(len, members.values()), default=0),
        "leaks": leaking,
    }
    write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def crowding(summary: dict) -> str | None:
    """What to tell the user when one group holds most of the store: rows that hardly tell videos apart
    (random weights put every pair of clips at 0.995 or more), whose leakage-free metrics would drop
    most test videos."""
    largest, videos = summary["largest_group"], summary["videos"]
    if largest <= 2 or largest <= CROWDED * videos:
        return None
    return (
        f"one duplicate group holds {largest} of {videos} videos: {summary['store']}'s rows hardly tell videos "
        "apart (untrained weights?), so leakage-free metrics drop most test videos; check its weights, or raise "
        "threshold"
    )


def leaking_tests(groups: list[list[tuple[str, str]]]) -> set[str]:
    """Test videos in a group (of (id, split) pairs) that also holds a train video."""
    leaking = set()
    for members in groups:
        if any(split == "train" for _, split in members):
            leaking.update(vid for vid, split in members if split == "test")
    return leaking


def leaking_groups(root: Path = INSIGHT) -> list[dict[str, list[str]]]:
    """The duplicate groups, of every insight under `root`, that hold both train and test videos:
    each as {"train": ids, "test": ids}."""
    found = []
    for path in sorted(Path(root).glob("*/duplicates.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            groups: dict[str, list[tuple[str, str]]] = {}
            for row in csv.DictReader(handle):
                groups.setdefault(row["group"], []).append((row["id"], row["split"]))
        for members in groups.values():
            split = {part: [vid for vid, s in members if s == part] for part in ("train", "test")}
            if split["train"] and split["test"]:
                found.append(split)
    return found


def leaking_test_ids(root: Path = INSIGHT) -> tuple[set[str], list[str]]:
    """(test ids with a duplicate in train by any insight under `root`, the insights read)."""
    read = [path.parent.name for path in sorted(Path(root).glob("*/duplicates.csv"))]
    return {vid for group in leaking_groups(root) for vid in group["test"]}, read


@dataclass
class Neighbour:
    id: str
    cosine: float
    split: str
    caption: str


def neighbours(
    store: str | Path,
    k: int,
    vid: str | None = None,
    query: np.ndarray | None = None,
    manifest: str | Path | None = None,
    caption: str = "text",
) -> list[Neighbour]:
    """The k videos of `store` nearest video `vid` of the store, or the unit row `query`, best first,
    with their split and caption from `manifest` (where given)."""
    if k < 1:
        raise ConfigError(f"neighbours: -k {k}: ask for 1 or more")
    reader = StoreReader(store)
    ids = reader.ids
    units, has_rows = unit_rows(reader)
    if vid is not None:
        if vid not in reader:
            raise ConfigError(
                f"{store} has no video {vid!r}: name an id of its manifest (python -m extract info {store})"
            )
        if len(ids) < 2:
            raise ConfigError(f"{store} holds one video, {vid!r}: it has no neighbours")
        position = ids.index(vid)
        if not has_rows[position]:
            raise ConfigError(f"{store}: video {vid!r} has no rows (no audio, or it failed), so no neighbours")
        query = units[position]
    # rows without features and the video itself come back too, and are dropped below
    found, cosines = nearest(units, query[None, :], k + 1 + int((~has_rows).sum()))
    rows = {}
    if manifest:
        rows = {row["id"]: row for row in read_prepared(manifest)}
    itself = ids.index(vid) if vid is not None else -1
    picked = [(int(i), float(c)) for i, c in zip(found[0], cosines[0], strict=True) if has_rows[i] and i != itself]
    picked = picked[:k]
    return [
        Neighbour(ids[i], c, rows.get(ids[i], {}).get("split", ""), rows.get(ids[i], {}).get(caption, ""))
        for i, c in picked
    ]


def embed_like(store: str | Path, video: str, backbones: dict, settings) -> np.ndarray:
    """A new video's unit row (mean row, L2-normalised), made with `store`'s recipe as `predict` makes a
    head's inputs; `backbones` (params.yaml's) name local weights where the recipe's were local."""
    import tempfile

    from extract.core.errors import UserError
    from extract.ondemand.remake import InputMaker
    from extract.stages.manifest import video_rows

    reader = StoreReader(store)
    recipe = reader.recipe
    if recipe.backbone is None:
        raise ConfigError(f"{store} is not a feature store (it has no backbone in its recipe): name data/features/*")
    rows = video_rows([video], None, Path.cwd())
    with tempfile.TemporaryDirectory(prefix="reelfeat-neighbours-") as tmp:
        maker = InputMaker(rows, Path(tmp), backbones, settings)
        maker.plan_views(recipe)
        maker.decode()
        made = StoreReader(maker.make(recipe))
        if made.attrs.get("config") != reader.attrs.get("config"):
            raise UserError(f"{video} was embedded with another recipe than {store}'s: its weights differ")
        failure = made.failures.get(rows[0]["id"])
        units, has_rows = unit_rows(made)
        if failure or not has_rows.any():
            raise UserError(f"{video}: {failure or 'no rows (no audio, or too short)'}")
        return units[0]
