"""What every backbone is: its params keys (`BackboneConfig`), what it reads and makes (`VideoInput`,
`Units`, `Rows`), and the three steps one extraction loop runs (`Backbone`), with the checks families share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from extract.backbones.precision import PRECISIONS, compute_dtype
from extract.backbones.weights import ResolvedWeights
from extract.core.config import ConfigError
from extract.core.recipe import Recipe

if TYPE_CHECKING:  # the families import torch when they are loaded; this module never does on import
    import torch

INPUT_KINDS = ("frames", "clips", "audio", "text")


@dataclass(frozen=True)
class BackboneConfig:
    """Keys every backbone takes in `params.yaml` under `backbones.<name>`."""

    model: str = ""  # registry name (see `python -m extract backbones`); default: the params key
    input: str = ""  # what it reads: a decoded store, the prepared manifest, or a whisper store
    weights: str | None = None  # library name or local file/folder; null: the model's default weights
    dtype: str = "float16"  # of the stored features: float16 or float32
    # the model's compute precision; auto: what the hardware does fast (see `compute_dtype`)
    precision: str = "auto"
    # keys left out of a store's recipe: paths (what they point at is recorded by content instead)
    not_in_recipe: ClassVar[tuple[str, ...]] = ("input", "weights")
    # keys in a store's recipe only where set to other than their default: keys added after stores
    # were made, so that those stores keep their recipe (and reuse key, and the heads trained on them)
    in_recipe_when_set: ClassVar[tuple[str, ...]] = ()

    def validate(self, where: str) -> None:
        if not self.input:
            raise ConfigError(f"{where}.input: name the file it reads, e.g. data/decoded/frames")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"{where}.dtype: {self.dtype!r} is not float16 or float32")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where}.precision: {self.precision!r} is not one of {list(PRECISIONS)}")


@dataclass
class VideoInput:
    """One video's input, as read from the source store or manifest."""

    vid: str
    rows: np.ndarray | torch.Tensor | None = None  # decoded frames, clips or audio samples
    timestamps: np.ndarray | None = None
    text: str | None = None

    def tensor(self) -> torch.Tensor:
        """The rows as a torch tensor, without a copy: frames decoded on a GPU (`extract.media.nvdec`)
        are one already, on that GPU, and stay there."""
        import torch

        if isinstance(self.rows, torch.Tensor):
            return self.rows
        return torch.from_numpy(np.ascontiguousarray(self.rows))


@dataclass
class Units:
    """One video's model inputs (any number, batched with other videos') and what assemble needs."""

    items: list[Any]
    timestamps: np.ndarray
    state: Any = None


@dataclass
class Rows:
    """One video's rows for the feature store, plus per-video text or facts."""

    feats: np.ndarray
    timestamps: np.ndarray
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)


class Backbone:
    """A frozen model on a device. Families override `units`, `embed` and, where needed, `assemble`."""

    input_kind: ClassVar[str]
    columns: ClassVar[dict[str, str]] = {}  # per-video columns it writes (name -> dtype, "str" for text)
    int8: ClassVar[bool] = False  # whether `precision: int8` runs it (on the CPU)

    def __init__(self, config: BackboneConfig, weights: ResolvedWeights, dim: int, device: torch.device) -> None:
        import torch

        if config.precision == "int8" and not (self.int8 and device.type == "cpu"):
            raise ConfigError(
                f"backbone {config.model}: precision int8 runs torchvision image classifiers on the CPU only "
                "(ONNX Runtime); give it auto, float32, bfloat16 or float16"
            )
        self.config = config
        self.weights = weights
        self.dim = dim
        self.device = device
        # int8's rows are measured against float32, the precision its model was made from
        self.compute_dtype = torch.float32 if config.precision == "int8" else compute_dtype(config.precision, device)

    def preprocessing(self) -> dict[str, Any]:
        """What is done to inputs before the model, recorded in the store."""
        return {}

    def provenance(self) -> dict[str, str | float]:
        """How the model computes here (precision `auto` resolved, and what runs it), for the store."""
        import torch

        return {"precision": str(self.compute_dtype).removeprefix("torch."), "runtime": f"torch {torch.__version__}"}

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        """Refuse, before any work, an input this model cannot take (row shape, sample rate)."""

    def units(self, video: VideoInput) -> Units:
        raise NotImplementedError

    def embed(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def before_assemble(self, finished: list[tuple[VideoInput, list[np.ndarray], Units]]) -> None:
        """Work over several finished videos at once before each is assembled; must not raise."""

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        if not outputs:  # no audio, or too short for one window: zero rows, not a failure
            return Rows(np.zeros((0, self.dim), np.float32), units.timestamps)
        return Rows(np.stack(outputs).reshape(len(outputs), -1), units.timestamps)

    def autocast(self) -> torch.autocast:
        """Mixed precision in `compute_dtype` (autocast keeps reductions and norms in float32)."""
        import torch

        enabled = self.compute_dtype != torch.float32
        dtype = self.compute_dtype if enabled else torch.bfloat16  # autocast checks dtype even when disabled
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)


class NotedBackbone(Backbone):
    """A backbone that writes each video's note (why it has no rows: no audio, too short), which its
    `units` leave in `Units.state` ("" where there is nothing to say)."""

    columns: ClassVar[dict[str, str]] = {"note": "str"}

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        rows = super().assemble(video, outputs, units)
        rows.columns["note"] = units.state
        return rows


def require_clip_len(backbone: Backbone, row_shape: tuple[int, ...], frames: int) -> None:
    """Video transformers take clips of one length: refuse a decoded clips view of another."""
    if row_shape[0] != frames:
        raise ConfigError(
            f"{backbone.config.model} takes clips of {frames} frames but {backbone.config.input} has "
            f"{row_shape[0]}: set clip_len: {frames} in its decode view"
        )


def audio_windows(
    samples: np.ndarray, window: int, rate: int, shortest: int = 1
) -> tuple[list[np.ndarray], np.ndarray]:
    """An audio model's inputs: consecutive windows of `window` samples (float32, the last may be
    shorter) and their start times in seconds. A tail shorter than `shortest` samples is dropped,
    unless it is all there is."""
    starts = list(range(0, len(samples), window))
    if len(starts) > 1 and len(samples) - starts[-1] < shortest:
        starts.pop()
    windows = [samples[start : start + window].astype(np.float32) for start in starts]
    return windows, (np.asarray(starts) / rate).astype(np.float32)


def require_sample_rate(backbone: Backbone, recipe: Recipe | None, rate: int) -> None:
    """Audio models take one sample rate: refuse a decoded audio view at another."""
    given = ((recipe.view if recipe else None) or {}).get("sample_rate", rate)
    if given != rate:
        raise ConfigError(
            f"{backbone.config.model} needs {rate} Hz audio; {backbone.config.input} is {given} Hz: "
            f"set sample_rate: {rate} in its decode view"
        )
