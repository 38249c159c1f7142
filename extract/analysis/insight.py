"""`insight@<name>`: the duplicates in one feature store, and which of them leak across the split.

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

The search is `knn.py`'s, exact.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.analysis.knn import knn_graph, unit_rows
from extract.core import project
from extract.core.config import ConfigError, build_config
from extract.core.files import atomic_write, write_text
from extract.stages.manifest import read_prepared
from extract.store import StoreReader

INSIGHT = project.INSIGHT
# measured on a trained Whisper tiny.en store: at it no group joins two clips and every copy of a real clip
# joins its original (bench/duplicates.py, docs/insight.md); for visual stores it is the value
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
