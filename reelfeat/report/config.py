"""The `report` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from extract.core import project
from extract.core.config import ConfigError, build_config

REPORT = project.REPORT


@dataclass(frozen=True)
class ReportConfig:
    heads: str = str(project.HEADS)  # every folder with a model.pt and metrics.json is a head
    stores: tuple[str, ...] = (str(project.DECODED), str(project.FEATURES))  # folders of store folders
    frames: str | None = str(project.DECODED / "frames")  # the view the strips are cut from
    transcripts: str | None = str(project.features("whisper"))  # a store with per-video `transcript` text
    caption: str = "text"  # the manifest column shown as the caption
    manifest: str = str(project.MANIFEST)
    worst: int = 4  # test videos shown per head
    strip_frames: int = 8
    runs: str = str(project.RUNS)
    maps: tuple[str, ...] = ()  # feature stores drawn as a 2-D map (t-SNE of the pooled rows)
    map_label: str = ""  # the manifest column that colours the map's points and its kNN probe
    map_limit: int = 2000  # at most this many videos drawn: a random subset (seed 0) above it
    insight: str = str(project.INSIGHT)  # duplicate groups: train-test pairs drawn as connected points

    def validate(self, where: str) -> None:
        for key in ("worst", "strip_frames", "map_limit"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: {getattr(self, key)!r}; write a whole number of at least 1")


def report_config(values: dict | None) -> ReportConfig:
    """The `report` section of params.yaml, every key checked by name and type."""
    return build_config(ReportConfig, dict(values or {}), "params.yaml report")
