"""The registry: names to backbone families, what each reads, and building one from its params."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from extract.backbones.contract import INPUT_KINDS, Backbone, BackboneConfig
from extract.backbones.precision import default_device
from extract.core.config import ConfigError, build_config

if TYPE_CHECKING:
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


def build_backbone(key: str, values: dict[str, Any], device: torch.device | None = None) -> Backbone:
    entry, config = backbone_config(key, values)
    return entry.build(config, device or default_device())
