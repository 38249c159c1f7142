"""Cached features for a head: every input store read once into memory through `StoreReader`.

Mean and max pooled inputs are pooled once; sequence inputs keep their rows and are cut to
`max_len` per batch (random rows in order while training, evenly spaced rows otherwise), then
padded with a mask. A video is used only when every input store and the manifest have it; a
video with zero rows in an input (no audio, audio shorter than a window) is used, with zeros and
a missing flag for that input, so the head can tell "nothing there" from a real value.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from extract.store import StoreReader
from extract.views import ConfigError
from heads.config import HeadConfig, InputConfig

POOLED = ("mean", "max")


@dataclass
class FeatureInput:
    spec: InputConfig
    feats: np.ndarray  # (T, D) float32, every video's rows
    offsets: np.ndarray  # (n + 1,)
    index: dict[str, int]
    pooled: np.ndarray | None  # (n, D) for mean/max inputs
    missing: np.ndarray  # (n,) bool: the video has zero rows in this input
    schema: dict  # what the checkpoint remembers of the store

    @property
    def dim(self) -> int:
        return int(self.feats.shape[1])


def store_schema(reader: StoreReader) -> dict:
    """What a trained head remembers of a store: its width and its recipe (see `extract.recipe`)."""
    return {"dim": int(reader.row_shape[0]), "recipe": reader.recipe}


def load_input(spec: InputConfig) -> FeatureInput:
    reader = StoreReader(spec.store)
    if len(reader.row_shape) != 1:
        raise ConfigError(
            f"{spec.store} holds rows of shape {reader.row_shape}, not feature vectors: heads read data/features/*.h5"
        )
    feats, _, offsets = reader.read_all()
    feats = feats.astype(np.float32)
    pooled = None
    if spec.pool in POOLED:
        reduce = np.mean if spec.pool == "mean" else np.max
        pooled = np.stack(
            [
                reduce(feats[a:b], axis=0) if b > a else np.zeros(feats.shape[1], np.float32)
                for a, b in zip(offsets[:-1], offsets[1:], strict=True)
            ]
        )
    missing = np.diff(offsets) == 0
    return FeatureInput(spec, feats, offsets, dict(reader.index), pooled, missing, store_schema(reader))


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class HeadData:
    """The videos a head can use, their manifest rows, and batches of their features."""

    def __init__(self, inputs: list[FeatureInput], rows: list[dict[str, str]]) -> None:
        self.inputs = inputs
        present = [all(row["id"] in inp.index for inp in inputs) for row in rows]
        self.missing = [row["id"] for row, ok in zip(rows, present, strict=True) if not ok]
        self.rows = [row for row, ok in zip(rows, present, strict=True) if ok]
        self.ids = [row["id"] for row in self.rows]

    @classmethod
    def load(cls, config: HeadConfig, rows: list[dict[str, str]] | None = None) -> HeadData:
        return cls(
            [load_input(spec) for spec in config.inputs], rows if rows is not None else read_manifest(config.manifest)
        )

    def split(self, name: str) -> np.ndarray:
        return np.array([i for i, row in enumerate(self.rows) if row.get("split") == name], np.int64)

    def dims(self) -> dict[str, int]:
        return {inp.spec.key: inp.dim for inp in self.inputs}

    def schema(self) -> dict[str, dict]:
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
            positions = [inp.index[self.ids[v]] for v in videos]
            missing[:, j] = inp.missing[positions]
            if inp.pooled is not None:
                out[inp.spec.key] = torch.from_numpy(inp.pooled[positions])
                continue
            seqs = [self._rows(inp, p, rng) for p in positions]
            length = max(1, max(len(s) for s in seqs))
            padded = np.zeros((len(seqs), length, inp.dim), np.float32)
            mask = np.zeros((len(seqs), length), bool)
            for i, seq in enumerate(seqs):
                padded[i, : len(seq)] = seq
                mask[i, : len(seq)] = True
            out[inp.spec.key] = (torch.from_numpy(padded), torch.from_numpy(mask))
        out["missing"] = torch.from_numpy(missing)
        return out

    @staticmethod
    def _rows(inp: FeatureInput, position: int, rng: np.random.Generator | None) -> np.ndarray:
        rows = inp.feats[inp.offsets[position] : inp.offsets[position + 1]]
        cap = inp.spec.max_len
        if len(rows) <= cap:
            return rows
        if rng is not None:
            return rows[np.sort(rng.choice(len(rows), cap, replace=False))]
        return rows[np.linspace(0, len(rows) - 1, cap).round().astype(int)]
