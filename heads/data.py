"""Cached features for a head, read through `StoreReader` without loading whole stores.

Mean and max pooled inputs are pooled once, a shard at a time, into an (n, D) array. Sequence
inputs are read per batch: at most `max_len` rows of each video in the batch (random rows in order
while training, evenly spaced rows otherwise), kept in the store's dtype until the batch is built,
then padded with a mask. So memory holds the pooled arrays and one batch, however many rows the
stores have. A video is used only when every input store and the manifest have it; a video with
zero rows in an input (no audio, audio shorter than a window) is used, with zeros and a missing
flag for that input, so the head can tell "nothing there" from a real value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from extract.core.config import ConfigError
from extract.core.errors import UserError
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
    counts: np.ndarray  # (n,) rows per video
    pooled: np.ndarray | None  # (n, D) float32 for mean/max inputs
    missing: np.ndarray  # (n,) bool: the video has zero rows in this input

    @property
    def dim(self) -> int:
        return int(self.reader.row_shape[0])

    @functools.cached_property
    def schema(self) -> InputSchema:
        """What a checkpoint remembers of the store (its recipe: stores made elsewhere may lack one)."""
        return InputSchema.of_store(self.reader)


def load_input(spec: InputConfig) -> FeatureInput:
    reader = StoreReader(spec.store)
    if len(reader.row_shape) != 1:
        raise ConfigError(
            f"{spec.store} holds rows of shape {reader.row_shape}, not feature vectors: heads read data/features/<name>"
        )
    position = {vid: i for i, vid in enumerate(reader.ids)}
    counts = reader.row_counts
    pooled = reader.pooled(POOLED[spec.pool]) if spec.pool in POOLED else None
    if pooled is not None and not np.isfinite(pooled).all():
        refuse_non_finite(
            reader, [vid for vid, row in zip(reader.ids, pooled, strict=True) if not np.isfinite(row).all()]
        )
    return FeatureInput(spec, reader, position, counts, pooled, counts == 0)


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

    @classmethod
    def load(cls, config: HeadConfig, rows: list[dict[str, str]] | None = None) -> HeadData:
        return cls(
            [load_input(spec) for spec in config.inputs], rows if rows is not None else read_prepared(config.manifest)
        )

    def split(self, name: str) -> np.ndarray:
        return np.array([i for i, row in enumerate(self.rows) if row.get("split") == name], np.int64)

    def dims(self) -> dict[str, int]:
        return {inp.spec.key: inp.dim for inp in self.inputs}

    def schema(self) -> dict[str, InputSchema]:
        return {inp.spec.key: inp.schema for inp in self.inputs}

    def batch(self, videos: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, object]:
        """Model inputs for videos (indices into self.rows): per input pooled (B, D) or ((B, L, D),
        mask (B, L)), and `missing` (B, inputs), 1.0 where a video has zero rows in that input.

        With `rng` (training) long sequences keep a random ordered subset of max_len rows;
        without it, max_len evenly spaced rows, so evaluation is deterministic.
        """
        out: dict[str, object] = {}
        missing = np.zeros((len(videos), len(self.inputs)), np.float32)
        for j, inp in enumerate(self.inputs):
            positions = [inp.position[self.ids[v]] for v in videos]
            missing[:, j] = inp.missing[positions]
            if inp.pooled is not None:
                out[inp.spec.key] = torch.from_numpy(inp.pooled[positions])
                continue
            seqs = [self._rows(inp, self.ids[v], p, rng) for v, p in zip(videos, positions, strict=True)]
            out[inp.spec.key] = pad_sequences(seqs, inp.dim)
        out["missing"] = torch.from_numpy(missing)
        return out

    @staticmethod
    def kept_rows(count: int, cap: int, rng: np.random.Generator | None = None) -> np.ndarray | None:
        """Which of a video's `count` rows a batch holds: None for all of them when they fit in `cap`."""
        if count <= cap:
            return None
        if rng is not None:
            return np.sort(rng.choice(count, cap, replace=False))
        return np.linspace(0, count - 1, cap).round().astype(np.int64)

    @classmethod
    def _rows(cls, inp: FeatureInput, vid: str, position: int, rng: np.random.Generator | None) -> np.ndarray:
        """At most max_len rows of one video, read from its shard; only the rows kept are read."""
        kept = cls.kept_rows(int(inp.counts[position]), inp.spec.max_len, rng)
        if kept is None:
            rows = inp.reader.read(vid)
        else:
            unique, back = np.unique(kept, return_inverse=True)  # rows are read in increasing order
            rows = inp.reader.read(vid, unique)[back]
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            refuse_non_finite(inp.reader, [vid])
        return rows
