"""Frozen backbones: one registry, one small module per family.

A name resolves to a registry entry: the family's config (its params keys), what it reads
(frames, clips, audio or text) and its builder. Builders resolve weights through
`extract.backbones.weights` and do their heavy imports inside, so listing or validating
backbones costs nothing.

Every backbone works in three steps, so one extraction loop serves them all:
`units` (CPU, in loader workers) turns one video's input into model inputs, `embed` runs a
batch of units from many videos, and `assemble` turns one video's outputs into store rows.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from extract.backbones.weights import ResolvedWeights
from extract.core.config import ConfigError, build_config
from extract.core.recipe import Recipe

if TYPE_CHECKING:  # the families import torch when they are loaded; this module never does on import
    import torch

FAMILY_MODULES = (
    "image",
    "video",
    "videomae",
    "text",
    "clip",
    "vggish",
    "whisper",
    "convlstm",
    "audio_spectrogram",
    "vjepa2",
    "clap",
    "videoprism",
    "pe_video",
)
INPUT_KINDS = ("frames", "clips", "audio", "text")
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")  # int8: torchvision image classifiers, CPU
# What each registered backbone reads, known without loading its family (the families import torch,
# about 3 s of a process's start): `run` picks its view and starts decoding from this before torch
# is imported. A test holds it to the registry; a name not here is looked up there.
READS = {
    "ast": "audio",
    "bert": "text",
    "clap": "audio",
    "clap_text": "text",
    "clip": "frames",
    "clip_text": "text",
    "convlstm_ae": "frames",
    "mc3_18": "clips",
    "mvit_v1_b": "clips",
    "mvit_v2_s": "clips",
    "pe_text": "text",
    "pe_video": "clips",
    "r2plus1d_18": "clips",
    "r3d_18": "clips",
    "resnet50": "frames",
    "s3d": "clips",
    "swin3d_b": "clips",
    "swin3d_s": "clips",
    "swin3d_t": "clips",
    "vggish": "audio",
    "videomae": "clips",
    "videoprism": "clips",
    "videoprism_text": "text",
    "vjepa2": "clips",
    "whisper": "audio",
}


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

    def validate(self, where: str) -> None:
        if not self.input:
            raise ConfigError(f"{where}.input: name the file it reads, e.g. data/decoded/frames")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"{where}.dtype: {self.dtype!r} is not float16 or float32")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where}.precision: {self.precision!r} is not one of {list(PRECISIONS)}")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16, as torch's CPU feature detection reports them."""
    import torch

    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a backbone computes in: `auto` picks bfloat16 on CPUs that do it natively (2-2.6x the
    float32 rate measured on AVX512-BF16; emulated it is slower than float32), float16 on CUDA, else
    float32. Any other setting is taken as given, so `float32` forces full precision anywhere."""
    import torch

    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


@dataclass
class VideoInput:
    """One video's input, as read from the source store or manifest."""

    vid: str
    rows: np.ndarray | None = None  # decoded frames, clips or audio samples
    timestamps: np.ndarray | None = None
    text: str | None = None


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


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    backbone_cls: type[Backbone]  # built as backbone_cls(config, device)
    config_cls: type[BackboneConfig]
    about: str
    # the registered text tower whose rows share this model's space (zero-shot heads embed labels with it)
    text_tower: str | None = None

    @property
    def input_kind(self) -> str:
        return self.backbone_cls.input_kind

    def build(self, config: BackboneConfig, device: torch.device) -> Backbone:
        return self.backbone_cls(config, device)


_REGISTRY: dict[str, BackboneEntry] = {}
_GENERIC: dict[str, Callable[[str], BackboneEntry | None]] = {}


def register_backbone(
    name: str,
    backbone_cls: type[Backbone],
    *,
    config_cls: type[BackboneConfig],
    about: str,
    text_tower: str | None = None,
) -> None:
    """Register `backbone_cls(config, device)` under `name`; it reads its class's `input_kind`.
    `text_tower`: for a model with a text tower in one space (CLIP, CLAP), that tower's registered name."""
    if backbone_cls.input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind {backbone_cls.input_kind!r} is not one of {INPUT_KINDS}")
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is registered twice")
    _REGISTRY[name] = BackboneEntry(name, backbone_cls, config_cls, about, text_tower)


def register_family(family: str, lookup: Callable[[str], BackboneEntry | None]) -> None:
    """A family that serves names beyond its registered ones (any torchvision classifier)."""
    _GENERIC[family] = lookup


def _load_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(f"extract.backbones.{module}")


def list_backbones() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneEntry:
    """The registry entry for a model name; an unknown name lists the valid ones."""
    _load_families()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for lookup in _GENERIC.values():
        entry = lookup(name)
        if entry is not None:
            return entry
    raise ConfigError(
        f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))} "
        "(any torchvision image classifier name works too)"
    )


def input_kind(name: str) -> str:
    """What backbone `name` reads (frames, clips, audio or text); a registered name without torch."""
    return READS.get(name) or get_backbone(name).input_kind


def backbone_config(
    key: str, values: dict[str, Any], section: str = "backbones", where: str | None = None
) -> tuple[BackboneEntry, BackboneConfig]:
    """Entry and validated config of `<section>.<key>` in params.yaml (`backbones`, or `encoders`);
    `where` names the values' origin in errors instead, where they came from elsewhere (`run`'s flags)."""
    values = {"model": key, **(values or {})}
    entry = get_backbone(values["model"])
    return entry, build_config(entry.config_cls, values, where or f"params.yaml {section}.{key}")


def default_device(wanted: str | None = None) -> torch.device:
    """`wanted` (the device setting) if given, else CUDA when present, else the CPU."""
    import torch

    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_backbone(key: str, values: dict[str, Any], device: torch.device | None = None) -> Backbone:
    entry, config = backbone_config(key, values)
    return entry.build(config, device or default_device())
