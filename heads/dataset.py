"""A `torch.utils.data.Dataset` over feature stores and a manifest, for people who train their own heads.

    from heads.dataset import FeatureDataset
    data = FeatureDataset({"image": "data/features/resnet50", "audio": "data/features/vggish"},
                          manifest="data/prepared/manifest.csv", split="train", pool="mean")
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, collate_fn=data.collate)
    for batch in loader:  # batch["image"]: (B, 2048), batch["rows"]: the manifest rows, ...

A video is in the dataset when every store and the manifest have it, as for the heads `dvc repro`
trains. Each item reads one video's rows from its shard, so nothing is loaded up front and loader
workers each read their own videos.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from extract.core.config import ConfigError
from extract.stages.manifest import read_prepared
from extract.store import StoreReader
from heads.data import POOLED, pad_sequences

POOLS = (*POOLED, None)


class FeatureDataset(Dataset):
    """One item per video: {"id", "row" (its manifest row, or {"id"} without a manifest), and per store
    key its rows: float32 (T, D) with `pool=None`, or (D,) pooled by "mean" or "max" (zeros for a
    video with no rows), plus "<key>_timestamps" (T,) seconds and "missing" (stores,) true where a
    video has no rows in that store}.

    stores: {key: store folder}, or a list of folders (keys: their folder names).
    manifest: a prepared manifest (path) or its rows; without one, the ids every store has.
    split: keep only the manifest rows of this split (train, val or test).
    """

    def __init__(
        self,
        stores: Mapping[str, str | Path] | list[str | Path],
        manifest: str | Path | list[dict[str, str]] | None = None,
        split: str | None = None,
        pool: str | None = None,
    ) -> None:
        if pool not in POOLS:
            raise ConfigError(f"pool={pool!r}: use 'mean', 'max' or None (padded sequences with masks)")
        if not isinstance(stores, Mapping):
            stores = {Path(path).name: path for path in stores}
        self.readers = {key: StoreReader(path) for key, path in stores.items()}
        for key, reader in self.readers.items():
            if len(reader.row_shape) != 1:
                raise ConfigError(f"{reader.path} ({key}) holds rows of shape {reader.row_shape}, not feature vectors")
        self.pool = pool
        if manifest is None:
            if split is not None:
                raise ConfigError(f"split={split!r} needs a manifest: the split is a manifest column")
            first = next(iter(self.readers.values()))
            rows = [{"id": vid} for vid in first.ids]
        else:
            rows = read_prepared(manifest) if isinstance(manifest, str | Path) else list(manifest)
        if split is not None:
            rows = [row for row in rows if row.get("split") == split]
        self.rows = [row for row in rows if all(row["id"] in reader for reader in self.readers.values())]
        self.ids = [row["id"] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def dims(self) -> dict[str, int]:
        return {key: int(reader.row_shape[0]) for key, reader in self.readers.items()}

    def __getitem__(self, index: int) -> dict[str, object]:
        row = self.rows[index]
        item: dict[str, object] = {"id": row["id"], "row": row}
        missing = []
        for key, reader in self.readers.items():
            rows, timestamps = reader.get(row["id"])
            rows = rows.astype(np.float32)
            missing.append(len(rows) == 0)
            if self.pool is None:
                item[key] = torch.from_numpy(rows)
            elif len(rows) == 0:
                item[key] = torch.zeros(reader.row_shape[0])
            else:
                item[key] = torch.from_numpy(POOLED[self.pool](rows, axis=0))
            item[f"{key}_timestamps"] = torch.from_numpy(timestamps.astype(np.float32))
        item["missing"] = torch.tensor(missing)
        return item

    def collate(self, items: list[dict[str, object]]) -> dict[str, object]:
        """A batch: "ids" and "rows" as lists, "missing" (B, stores), and per store key (B, D) pooled
        rows, or with `pool=None` a (B, L, D) zero-padded tensor and "<key>_mask" (B, L), true on real rows."""
        batch: dict[str, object] = {"ids": [i["id"] for i in items], "rows": [i["row"] for i in items]}
        for key, dim in self.dims().items():
            if self.pool is None:
                batch[key], batch[f"{key}_mask"] = pad_sequences([i[key].numpy() for i in items], dim)
            else:
                batch[key] = torch.stack([i[key] for i in items])
        batch["missing"] = torch.stack([i["missing"] for i in items])
        return batch
