"""Frozen backbones: one registry, one small module per family.

A name resolves to a registry entry: the family's config (its params keys), what it reads
(frames, clips, audio or text) and its builder. Builders resolve weights through
`extract.backbones.weights` and do their heavy imports inside, so listing or validating
backbones costs nothing.

Every backbone works in three steps, so one extraction loop serves them all:
`units` (CPU, in loader workers) turns one video's input into model inputs, `embed` runs a
batch of units from many videos, and `assemble` turns one video's outputs into store rows.

The package is three modules: `contract` (what a backbone is), `precision` (device and dtype) and
`registry` (names to families); the families import their names from here.
"""

from extract.backbones.contract import (
    INPUT_KINDS,
    Backbone,
    BackboneConfig,
    NotedBackbone,
    Rows,
    Units,
    VideoInput,
    audio_windows,
    require_clip_len,
    require_sample_rate,
)
from extract.backbones.precision import PRECISIONS, compute_dtype, cpu_has_native_bf16, default_device
from extract.backbones.registry import (
    FAMILY_MODULES,
    READS,
    BackboneEntry,
    backbone_config,
    build_backbone,
    get_backbone,
    input_kind,
    list_backbones,
    register_backbone,
    register_family,
)

__all__ = [
    "FAMILY_MODULES",
    "INPUT_KINDS",
    "PRECISIONS",
    "READS",
    "Backbone",
    "BackboneConfig",
    "BackboneEntry",
    "NotedBackbone",
    "Rows",
    "Units",
    "VideoInput",
    "audio_windows",
    "backbone_config",
    "build_backbone",
    "compute_dtype",
    "cpu_has_native_bf16",
    "default_device",
    "get_backbone",
    "input_kind",
    "list_backbones",
    "register_backbone",
    "register_family",
    "require_clip_len",
    "require_sample_rate",
]
