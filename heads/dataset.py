"""A `torch.utils.data.Dataset` over feature stores and a manifest, for people who train their own heads.

    from heads.dataset import FeatureDataset
    data = FeatureDataset({"image": "data/features/resnet50", "audio": "data/features/vggish"},
                          manifest="data/prepared/manifest.csv", split="train", pool="mean")
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, collate_fn=data.collate)
    for batch in loader:  # batch["image"]: (B, 2048), batch["rows"]: the manifest rows, ...

Its videos and features are read by the heads' own reader (`heads.data.HeadData`), so a notebook
sees what `dvc repro`'s heads train on: a video is in the dataset when every store and the manifest
have it; mean and max pools are computed once per store when the dataset is made, as the heads' are;
sequences are read per item from their shards (at most `max_len` rows, evenly spaced, where given),
so loader workers each read their own videos.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from extract.core.config import ConfigError
from extract.stages.manifest import read_prepared
from heads.config import InputConfig
from heads.data import POOLED, HeadData, load_input, pad_sequences

POOLS = (*POOLED, None)
ALL_ROWS = 2**62  # max_len None: every row of a video


class FeatureDataset(Dataset):
    """One item per video: {"id", "row" (its manifest row, or {"id"} without a manifest), and per store
    key its rows: float32 (T, D) with `pool=None`, or (D,) pooled by "mean" or "max" (zeros for a
    video with no rows), plus "<key>_timestamps" (T,) seconds and "missing" (stores,) true where a
    video has no rows in that store}.

    stores: {key: store folder}, or a list of folders (keys: their folder names).
    manifest: a prepared manifest (path) or its rows; without one, the ids every store has.
    split: keep only the manifest rows of this split (train, val or test).
    max_len: with `pool=None`, at most this many rows of a video, evenly spaced (as heads read them
    outside training); None: all of them.
    """

    def __init__(
        self,
        stores: Mapping[str, str | Path] | list[str | Path],
        manifest: str | Path | list[dict[str, str]] | None = None,
        split: str | None = None,
        pool: str | None = None,
        max_len: int | None = None,
    ) -> None:
        if pool not in POOLS:
            raise ConfigError(f"pool={pool!r}: use 'mean', 'max' or None (padded sequences with masks)")
        if max_len is not None and max_len < 1:
            raise ConfigError(f"max_len={max_len}: keep 1 or more rows, or None for all of them")
        if not isinstance(stores, Mapping):
            stores = {Path(path).name: path for path in stores}
        # a sequence input is read as a head's sequence encoder reads it (which one does not matter here)
        specs = [InputConfig(str(path), pool or "lstm", key, max_len or ALL_ROWS) for key, path in stores.items()]
        inputs = [load_input(spec) for spec in specs]
        if manifest is None:
            if split is not None:
                raise ConfigError(f"split={split!r} needs a manifest: the split is a manifest column")
            rows = [{"id": vid} for vid in inputs[0].reader.ids]
        else:
            rows = read_prepared(manifest) if isinstance(manifest, str | Path) else list(manifest)
        if split is not None:
            rows = [row for row in rows if row.get("split") == split]
        self.data = HeadData(inputs, rows)
        self.pool, self.rows, self.ids = pool, self.data.rows, self.data.ids

    def __len__(self) -> int:
        return len(self.rows)

    def dims(self) -> dict[str, int]:
        return self.data.dims()

    def __getitem__(self, index: int) -> dict[str, object]:
        vid = self.ids[index]
        batch = self.data.batch(np.array([index]))
        item: dict[str, object] = {"id": vid, "row": self.rows[index]}
        for inp in self.data.inputs:
            key, times = inp.spec.key, inp.reader.timestamps(vid)
            if inp.pooled is not None:
                item[key] = batch[key][0]
            else:
                padded, mask = batch[key]
                item[key] = padded[0][mask[0]]
                kept = HeadData.kept_rows(len(times), inp.spec.max_len)
                times = times if kept is None else times[kept]
            item[f"{key}_timestamps"] = torch.from_numpy(times.astype(np.float32))
        item["missing"] = batch["missing"][0].bool()
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
