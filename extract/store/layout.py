"""What every store shares: the schema version, the error and each store's row layout. See
`extract.store` for the layout on disk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from extract.core.errors import UserError

SCHEMA_VERSION = 2
STORAGES = ("raw", "jpeg")


class StoreError(UserError):
    """A store that is missing, of another schema, damaged, being written, or asked for a video it lacks."""


@dataclass(frozen=True)
class Layout:
    """What every row of a store looks like and how it is kept."""

    row_shape: tuple[int, ...]
    dtype: str
    info_dtypes: dict[str, str] = field(default_factory=dict)  # per-video columns; "str" for text
    storage: str = "raw"  # raw | jpeg (uint8 frames only, one JPEG per frame)
    jpeg_quality: int = 90

    @classmethod
    def of(cls, values: Mapping) -> Layout:
        return cls(**{**values, "row_shape": tuple(values["row_shape"]), "info_dtypes": dict(values["info_dtypes"])})

    @property
    def frames_per_row(self) -> int:
        """JPEG images per row: 1 for a frame, L for a clip of L frames."""
        return int(np.prod(self.row_shape[:-3], dtype=np.int64))
