"""Where a DVC project keeps its data: the `data/` layout every stage and command reads, in one place.
`dvc.yaml` spells the same paths for DVC (its `outs` and `deps`); relative to the project root."""

from __future__ import annotations

from pathlib import Path

from extract.core.config import ConfigError

DATA = Path("data")
PREPARED = DATA / "prepared"  # `prepare`: the table the other stages read ids, splits and labels from
MANIFEST = PREPARED / "manifest.csv"
DECODED = DATA / "decoded"  # `decode`: one store per view
FEATURES = DATA / "features"  # `features` (extract@, encode@): one store per backbone or encoder
ENCODERS = DATA / "encoders"  # `train-encoder`: one folder per learned encoder
INSIGHT = DATA / "insight"  # `insight`: duplicate groups per store
HEADS = DATA / "heads"  # `train`, `evaluate`: one folder per head
REPORT = DATA / "report" / "index.html"
RUNS = DATA / "runs"  # each stage's last time, for the report


def features(name: str) -> Path:
    return FEATURES / name


def head(name: str) -> Path:
    return HEADS / name


def encoder(name: str) -> Path:
    return ENCODERS / name


def optional_manifest(named: str | None) -> str | None:
    """A manifest named with --manifest, which must exist; without one, the prepared manifest where there is one."""
    if named is None:
        return str(MANIFEST) if MANIFEST.is_file() else None
    if not Path(named).is_file():
        raise ConfigError(f"--manifest {named}: no such file; name a prepared manifest, or leave it out")
    return named
