"""What the video transformers on clips views share (V-JEPA 2, VideoPrism, PE video): the clip
length check, the processor's steps on tensors, and each row's time.

A family sets `pixels`, `frames_per_clip` (None: any length, taken from the view) and
`frames_per_row` (frames each row spans: the tubelet, 1 per frame, None for one row per clip)
before `Backbone.__init__`, and its `embed` returns (clips, rows per clip, D) or (clips, D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from extract.backbones import Backbone, BackboneConfig, Rows, Units, VideoInput, require_clip_len
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.tokens import TokenGrid
from extract.core.config import ConfigError
from extract.core.recipe import Recipe


@dataclass(frozen=True)
class SharedSpaceConfig(BackboneConfig):
    """A video-text model's video tower (VideoPrism, PE video)."""

    rows: str = "frame"  # frame: one row per frame; shared: one row per clip in the video-text space
    row_kinds: ClassVar[tuple[str, ...]] = ("frame", "shared")

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.rows not in self.row_kinds:
            raise ConfigError(f"{where}.rows: {self.rows!r} is not one of {list(self.row_kinds)}")


class ClipTransformer(Backbone):
    input_kind = "clips"
    pixels: TensorImageProcessor
    frames_per_clip: int | None
    frames_per_row: int | None
    rows_per_step: int = 1  # rows that share one time step (patch tokens: the grid's cells)
    frame_step_s: float | None = None  # seconds between a clip's frames, from the view's fps
    grid: TokenGrid | None = None  # where rows are patch tokens: their grid per time step

    def use_token_rows(self, steps: int, side: int, pool: int, what: str) -> None:
        """Rows are every patch token of each of `steps` time steps of a `side` x `side` grid, `pool` x
        `pool` patches averaged; the store records the grid per video (`token_grid`)."""
        self.steps, self.grid = steps, TokenGrid(side, pool, what)
        self.rows_per_step = self.grid.cells
        self.columns = {"token_grid": "str"}

    def token_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """(clips, steps x patches, D) tokens in time-step, then row-major order -> (clips, steps x cells, D)."""
        return self.grid.pool(tokens.reshape(len(tokens), self.steps, -1, tokens.shape[-1])).flatten(1, 2)

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        if self.frames_per_clip is None:
            self.frames_per_clip = int(row_shape[0])
        require_clip_len(self, row_shape, self.frames_per_clip)
        fps = ((recipe.view if recipe else None) or {}).get("fps")
        self.frame_step_s = 1.0 / fps if fps else None

    def preprocessing(self) -> dict[str, Any]:
        return self.pixels.describe()

    def units(self, video: VideoInput) -> Units:
        clips = video.tensor().permute(0, 1, 4, 2, 3)  # (K, L, 3, H, W) uint8
        return Units([self.pixels(clip) for clip in clips], self.row_times(np.asarray(video.timestamps, np.float64)))

    def row_times(self, centres: np.ndarray) -> np.ndarray:
        """Each row's time: the clip's centre, or the middle of the frames each row spans."""
        if self.frames_per_row is None or not len(centres):
            return centres.astype(np.float32)
        frames, span = self.frames_per_clip or 1, self.frames_per_row
        # with fps: null a view spreads a clip's frames over its share of the video: 2 x the first centre
        step = self.frame_step_s or 2 * float(centres[0]) / frames
        offsets = ((np.arange(frames // span) + 0.5) * span - frames / 2) * step
        times = (centres[:, None] + offsets[None, :]).ravel().astype(np.float32)
        return np.repeat(times, self.rows_per_step)

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        columns = {}
        if self.grid is not None:
            columns["token_grid"] = self.grid.column(len(units.items), self.steps)
        if not outputs:
            return Rows(np.zeros((0, self.dim), np.float32), units.timestamps, columns)
        return Rows(np.concatenate([np.reshape(out, (-1, self.dim)) for out in outputs]), units.timestamps, columns)
