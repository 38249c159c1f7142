"""The `report` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extract.views import ConfigError

REPORT = Path("data/report/index.html")


@dataclass(frozen=True)
class ReportConfig:
    heads: str = "data/heads"  # every folder with a model.pt and metrics.json is a head
    stores: tuple[str, ...] = ("data/decoded", "data/features")  # folders of store folders
    frames: str | None = "data/decoded/frames"  # the view the strips are cut from
    transcripts: str | None = "data/features/whisper"  # a store with per-video `transcript` text
    caption: str = "text"  # the manifest column shown as the caption
    manifest: str = "data/prepared/manifest.csv"
    worst: int = 4  # test videos shown per head
    strip_frames: int = 8
    runs: str = "data/runs"


def report_config(values: dict | None) -> ReportConfig:
    """The `report` section of params.yaml; unknown keys are refused by name."""
    values = dict(values or {})
    known = set(ReportConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"report: unknown key(s) {unknown}; known: {sorted(known)}")
    if "stores" in values:
        values["stores"] = tuple(values["stores"] or ())
    for key in ("worst", "strip_frames"):
        if key in values and (not isinstance(values[key], int) or values[key] < 1):
            raise ConfigError(f"report.{key}: {values[key]!r}; write a whole number of at least 1")
    return ReportConfig(**values)
