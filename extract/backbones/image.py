"""torchvision image classifiers on frame views: the pooled vector before the classifier, one row per frame.

`resnet50` is registered by name (the BERT+ResNet50 seed); any other torchvision classification
model name (`efficientnet_b0`, `vit_b_16`, ...) resolves to this family too.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from extract.backbones import (
    Backbone,
    BackboneConfig,
    BackboneEntry,
    Units,
    VideoInput,
    compute_dtype,
    register_backbone,
    register_family,
)
from extract.backbones.onnx_runtime import OnnxClassifier, cache_key
from extract.backbones.weights import ResolvedWeights, WeightsError, is_local_path, local_files, torch_hub_file
from extract.core.config import ConfigError

log = logging.getLogger(__name__)


def resolve_torchvision(name: str, weights: str | None, what: str) -> tuple[Any, ResolvedWeights]:
    """(the weights enum member whose transforms to use, resolved weights), without building the model.

    A library name is a member of the model's weights enum (`IMAGENET1K_V2`, `DEFAULT`, ...),
    fetched into the torch hub cache; a local file is loaded as a state dict, and then the
    preprocessing is that of the model's default weights.
    """
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    if weights and is_local_path(weights):
        return enum.DEFAULT, ResolvedWeights(weights, "path", local_files(weights, what))
    wanted = (weights or "DEFAULT").rsplit(".", 1)[-1]
    try:
        member = enum[wanted]
    except KeyError:
        raise ConfigError(
            f"{what}: weights {weights!r} are not among {name}'s: {[w.name for w in enum]}; or give a local file"
        ) from None
    files = (torch_hub_file(member.url, what),)
    return member, ResolvedWeights(weights or str(member), f"torchvision:{member}", files)


def build_torchvision(name: str, weights: ResolvedWeights, what: str) -> nn.Module:
    """The model with its weights, in eval mode."""
    from torchvision.models import get_model

    model = get_model(name, weights=None)
    state = torch.load(weights.path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        reason = str(exc).splitlines()[0]
        raise WeightsError(f"{what}: {weights.path} is not a state dict of {name}: {reason}") from None
    return model.eval()


def load_torchvision(name: str, weights: str | None, what: str) -> tuple[nn.Module, Any, ResolvedWeights]:
    """(model in eval mode, the weights enum member whose transforms to use, resolved weights)."""
    member, resolved = resolve_torchvision(name, weights, what)
    return build_torchvision(name, resolved, what), member, resolved


def strip_classifier(model: nn.Module) -> int:
    """Replace the final classifier by identity; returns the size of the vector it received."""
    from torchvision.models.video import S3D

    if isinstance(model, S3D):  # its classifier is a 1x1x1 convolution, pooled after
        dim = model.classifier[1].in_channels
        model.classifier = nn.Identity()
        return dim
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no linear classifier to remove; pick another model")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    dim = getattr(parent, attr).in_features
    setattr(parent, attr, nn.Identity())
    return dim


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """The model with each batch norm folded into the convolution before it (9% faster ResNet50 on the
    CPU, same outputs to float rounding); a model torch.fx cannot trace is returned as it is."""
    from torch.fx.experimental.optimization import fuse

    if not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()):
        return model  # nothing to fold; tracing would only cost time
    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 - untraceable control flow (e.g. shape asserts): keep it unfolded
        return model


class TorchvisionBackbone(Backbone):
    """A torchvision classifier without its classifier, fed by its weights' own transforms."""

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        what = f"backbone {config.model}"
        model, member, weights = load_torchvision(config.model, config.weights, what)
        dim = strip_classifier(model)
        model = fold_batch_norms(model)
        super().__init__(config, weights, dim, device)
        self.transforms = member.transforms()
        # Channels-last convolutions run ~1.6-1.8x faster on the CPU (oneDNN) and use tensor cores on CUDA.
        self.memory_format = torch.channels_last_3d if self.input_kind == "clips" else torch.channels_last
        self.model = model.to(device, memory_format=self.memory_format)

    def preprocessing(self) -> dict[str, Any]:
        return {"transforms": " ".join(repr(self.transforms).split())}

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with self.autocast():
            return self.model(batch).float()


class ImageBackbone(TorchvisionBackbone):
    """Frames through an image classifier: eagerly in torch, or, on the CPU in float32 and int8, in
    ONNX Runtime (`onnx_runtime`: faster there, measured), whose model is exported once per machine."""

    input_kind = "frames"
    int8 = True  # `precision: int8` runs here (ONNX Runtime)

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        precision = compute_dtype(config.precision, device) if config.precision != "int8" else "int8"
        if device.type != "cpu" or precision not in (torch.float32, "int8"):
            super().__init__(config, device)
            self.runtime: OnnxClassifier | None = None
            return
        what = f"backbone {config.model}"
        member, weights = resolve_torchvision(config.model, config.weights, what)
        transforms = member.transforms()
        crop = list(transforms.crop_size)
        size = (crop[0], crop[-1])

        def classifier() -> nn.Module:
            model = build_torchvision(config.model, weights, what)
            strip_classifier(model)
            return model

        key, name = cache_key(config.model, weights.sha256), str(precision).removeprefix("torch.")
        try:
            normalize = (list(transforms.mean), list(transforms.std))
            runtime = OnnxClassifier(classifier, key, size, normalize, name, torch.get_num_threads())
        except WeightsError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model torch cannot export: eager float32 computes the same rows
            if precision == "int8":
                raise ConfigError(f"{what}: precision int8 needs an ONNX export, which failed: {exc}") from None
            log.warning("%s: exporting to ONNX failed (%s); running it eagerly in torch", what, exc)
            super().__init__(config, device)
            self.runtime = None
            return
        Backbone.__init__(self, config, weights, runtime.dim, device)
        self.transforms, self.runtime = transforms, runtime

    def units(self, video: VideoInput) -> Units:
        frames = video.tensor().permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
        return Units(list(self.transforms(frames)), video.timestamps)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        if self.runtime is None:
            return super().embed(batch)
        return torch.from_numpy(self.runtime(batch.numpy()))

    def provenance(self) -> dict[str, str | float]:
        if self.runtime is None:
            return super().provenance()
        found = {"precision": self.runtime.precision, "runtime": self.runtime.version}
        if self.runtime.int8_min_cosine is not None:
            found["int8_min_cosine"] = self.runtime.int8_min_cosine
        return found


register_backbone("resnet50", ImageBackbone, config_cls=BackboneConfig, about="torchvision ResNet50, 2048-d per frame")


def _any_classifier(name: str) -> BackboneEntry | None:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        return None
    return BackboneEntry(name, ImageBackbone, BackboneConfig, f"torchvision {name}, penultimate vector per frame")


register_family("torchvision-image", _any_classifier)
