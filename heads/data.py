"""Cached features for a head, read through `StoreReader` without loading whole stores.

Mean and max pooled inputs are pooled once, a shard at a time, into an (n, D) array. Sequence
inputs are read per batch: at most `max_len` rows of each video in the batch (random rows in order
while training, evenly spaced rows otherwise), kept in the store's dtype until the batch is built,
then padded with a mask. So memory holds the pooled arrays and one batch, however many rows the
stores have. A video is used only when every input store and the manifest have it; a video with
zero rows in an input (no audio, audio shorter than a window) is used, with zeros and a missing
flag for that input, so the head can tell "nothing there" from a real value.

With `views: each` an input made from a clips view of several clips (segments x crops) is read
view by view, as the papers' multi-view evaluations read it: a video's rows are its views' rows,
view after view, in equal numbers. A training batch takes one random view of each video (the same
view in every such input); `predict_scores` scores every view and averages the scores.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from extract.core.config import ConfigError
from extract.core.errors import UserError
from extract.core.recipe import Recipe
from extract.stages.manifest import read_prepared
from extract.store import StoreReader
from heads.checkpoint import InputSchema
from heads.config import HeadConfig, InputConfig

POOLED = {"mean": np.mean, "max": np.max}  # pools applied to a video's rows once, before training


@dataclass
class FeatureInput:
    spec: InputConfig
    reader: StoreReader
    position: dict[str, int]  # id -> its row in `counts`, `pooled` and `missing`
    counts: np.ndarray  # (n,) rows per video, per view where it has several
    pooled: np.ndarray | None  # (n, D) float32 for mean/max inputs; (n, views, D) with several views
    missing: np.ndarray  # (n,) bool: the video has zero rows in this input
    views: int = 1  # views per video read apart (`views: each`), 1: all its rows together

    @property
    def dim(self) -> int:
        return int(self.reader.row_shape[0])

    @functools.cached_property
    def schema(self) -> InputSchema:
        """What a checkpoint remembers of the store (its recipe: stores made elsewhere may lack one)."""
        return InputSchema.of_store(self.reader)


def load_input(spec: InputConfig, each_view: bool = False) -> FeatureInput:
    """An input's store, pooled where its pool says so; with `each_view`, view by view."""
    reader = StoreReader(spec.store)
    if len(reader.row_shape) != 1:
        raise ConfigError(
            f"{spec.store} holds rows of shape {reader.row_shape}, not feature vectors: heads read data/features/<name>"
        )
    position = {vid: i for i, vid in enumerate(reader.ids)}
    counts = reader.row_counts
    views = clip_views(reader.recipe) if each_view else 1
    uneven = [vid for vid, count in zip(reader.ids, counts, strict=True) if count % views]
    if uneven:
        raise UserError(
            f"{spec.store}: the rows of {uneven[0]!r} ({counts[position[uneven[0]]]}) do not split into its "
            f"{views} views; rerun the stage that writes the store, or read its rows together (views: pooled)"
        )
    pooled = None
    if spec.pool in POOLED and views == 1:
        pooled = reader.pooled(POOLED[spec.pool])
    elif spec.pool in POOLED:
        pooled = np.zeros((len(reader.ids), views, reader.row_shape[0]), np.float32)
        for vid, rows in reader.iter_rows():
            if len(rows):
                pooled[position[vid]] = POOLED[spec.pool](rows.reshape(views, -1, rows.shape[-1]), axis=1)
    if pooled is not None and not np.isfinite(pooled).all():
        bad = ~np.isfinite(pooled.reshape(len(pooled), -1)).all(axis=1)
        refuse_non_finite(reader, [vid for vid, is_bad in zip(reader.ids, bad, strict=True) if is_bad])
    return FeatureInput(spec, reader, position, counts // views, pooled, counts == 0, views)


def clip_views(recipe: Recipe | None) -> int:
    """Views per video of the clips view a store's rows were made from (segments x crops); 1 where
    they were made from anything else."""
    while recipe is not None and recipe.view is None:
        recipe = recipe.input
    view = (recipe.view if recipe else None) or {}
    if view.get("type") != "clips":
        return 1
    return int(view.get("num_clips", 1)) * int(view.get("crops", 1))


def refuse_non_finite(reader: StoreReader, vids: list[str]) -> None:
    """A head never learns from or scores NaN or Inf rows (a store written before reelfeat refused them,
    or imported): the error names the videos."""
    shown = ", ".join(repr(vid) for vid in vids[:5]) + (f" and {len(vids) - 5} more" if len(vids) > 5 else "")
    raise UserError(
        f"{reader.path}: the rows of {shown} hold NaN or Inf; rerun the stage that writes the store "
        "(this reelfeat records such videos as failed instead of storing them)"
    )


def pad_sequences(seqs: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of (T_i, dim) rows as one zero-padded (B, L, dim) float32 tensor and its (B, L)
    mask, true on real rows; L is the longest sequence, at least 1."""
    length = max(1, max((len(s) for s in seqs), default=0))
    padded = np.zeros((len(seqs), length, dim), np.float32)
    mask = np.zeros((len(seqs), length), bool)
    for i, seq in enumerate(seqs):
        padded[i, : len(seq)] = seq
        mask[i, : len(seq)] = True
    return torch.from_numpy(padded), torch.from_numpy(mask)


class HeadData:
    """The videos a head can use, their manifest rows, and batches of their features."""

    def __init__(self, inputs: list[FeatureInput], rows: list[dict[str, str]]) -> None:
        self.inputs = inputs
        present = [all(row["id"] in inp.position for inp in inputs) for row in rows]
        self.missing = [row["id"] for row, ok in zip(rows, present, strict=True) if not ok]
        self.rows = [row for row, ok in zip(rows, present, strict=True) if ok]
        self.ids = [row["id"] for row in self.rows]
        counts = {inp.views for inp in inputs if inp.views > 1}
        if len(counts) > 1:
            shown = ", ".join(f"{inp.spec.key}: {inp.views}" for inp in inputs if inp.views > 1)
            raise UserError(f"views: each needs one number of views in every input made from clips; found {shown}")
        self.views = counts.pop() if counts else 1  # views read apart (views: each), 1: whole videos

    @classmethod
    def load(cls, config: HeadConfig, rows: list[dict[str, str]] | None = None) -> HeadData:
        inputs = [load_input(spec, config.views == "each") for spec in config.inputs]
        return cls(inputs, rows if rows is not None else read_prepared(config.manifest))

    def split(self, name: str) -> np.ndarray:
        return np.array([i for i, row in enumerate(self.rows) if row.get("split") == name], np.int64)

    def dims(self) -> dict[str, int]:
        return {inp.spec.key: inp.dim for inp in self.inputs}

    def schema(self) -> dict[str, InputSchema]:
        return {inp.spec.key: inp.schema for inp in self.inputs}

    def batch(
        self, videos: np.ndarray, rng: np.random.Generator | None = None, view: int | None = None
    ) -> dict[str, object]:
        """Model inputs for videos (indices into self.rows): per input pooled (B, D) or ((B, L, D),
        mask (B, L)), and `missing` (B, inputs), 1.0 where a video has zero rows in that input.

        With `rng` (training) long sequences keep a random ordered subset of max_len rows;
        without it, max_len evenly spaced rows, so evaluation is deterministic. Where inputs are
        read view by view, `view` picks each video's view; with `rng` and no `view`, a random view
        per video, the same in every input.
        """
        out: dict[str, object] = {}
        if view is None and rng is not None and self.views > 1:
            chosen = rng.integers(self.views, size=len(videos))
        else:
            chosen = np.full(len(videos), view or 0)
        missing = np.zeros((len(videos), len(self.inputs)), np.float32)
        for j, inp in enumerate(self.inputs):
            positions = [inp.position[self.ids[v]] for v in videos]
            missing[:, j] = inp.missing[positions]
            if inp.pooled is not None:
                pooled = inp.pooled[positions, chosen] if inp.views > 1 else inp.pooled[positions]
                out[inp.spec.key] = torch.from_numpy(pooled)
                continue
            seqs = [
                self._rows(inp, self.ids[v], p, rng, int(c) if inp.views > 1 else 0)
                for v, p, c in zip(videos, positions, chosen, strict=True)
            ]
            out[inp.spec.key] = pad_sequences(seqs, inp.dim)
        out["missing"] = torch.from_numpy(missing)
        return out

    def times_read(self, inp: FeatureInput, vid: str, view: int = 0) -> np.ndarray:
        """The times of the rows an evaluation batch reads of a video (of its view `view`)."""
        count = int(inp.counts[inp.position[vid]])
        times = inp.reader.timestamps(vid)[view * count : (view + 1) * count]
        kept = self.kept_rows(count, inp.spec.max_len)
        return times if kept is None else times[kept]

    @staticmethod
    def kept_rows(count: int, cap: int, rng: np.random.Generator | None = None) -> np.ndarray | None:
        """Which of a video's `count` rows a batch holds: None for all of them when they fit in `cap`."""
        if count <= cap:
            return None
        if rng is not None:
            return np.sort(rng.choice(count, cap, replace=False))
        return np.linspace(0, count - 1, cap).round().astype(np.int64)

    @classmethod
    def _rows(
        cls, inp: FeatureInput, vid: str, position: int, rng: np.random.Generator | None, view: int = 0
    ) -> np.ndarray:
        """At most max_len rows of one video (of one of its views), read from its shard; only the rows
        kept are read."""
        count = int(inp.counts[position])
        kept = cls.kept_rows(count, inp.spec.max_len, rng)
        if kept is None and inp.views == 1:
            rows = inp.reader.read(vid)
        else:
            kept = np.arange(count) if kept is None else kept
            unique, back = np.unique(kept + view * count, return_inverse=True)  # rows are read in increasing order
            rows = inp.reader.read(vid, unique)[back]
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            refuse_non_finite(inp.reader, [vid])
        return rows
