"""Feature files in other tools' formats: PaddleVideo's feature_files, NumPy files, Parquet shards.

Each format has an export (a store into the format: returns the videos written) and an import (files
in the format into stores: returns `Imported`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Imported:
    """What an import wrote: its stores by name, how many videos came in, and the manifest it wrote
    where the format carries ids, labels and splits (PaddleVideo's)."""

    stores: dict[str, Path]
    videos: int
    manifest: Path | None = None

    def lines(self, source: str | Path) -> list[str]:
        """What a command says it wrote."""
        said = [f"{path}: {self.videos} videos imported from {source}" for path in self.stores.values()]
        return said + ([f"{self.manifest}: their ids, labels and splits"] if self.manifest else [])
