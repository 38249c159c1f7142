"""CLAP (transformers `ClapModel`): audio and text in one space, L2-normalised, as CLIP has for images.

`clap` reads a 48 kHz audio view: one row per 10 s window (the checkpoint's feature extractor's
`max_length_s`), windows following each other without overlap; a window shorter than that is
repeat-padded by the extractor, as CLAP was trained. Since no window is longer, the extractor never
crops at random. `clap_text` is the text tower (`get_text_features`) on captions or transcripts:
it is `clip_text` with CLAP's default checkpoint, so `kind: zero_shot` heads score audio against
label prompts as they score frames with CLIP. Default checkpoint `laion/clap-htsat-unfused`
(Apache-2.0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from extract.backbones import (
    BackboneConfig,
    NotedBackbone,
    Units,
    VideoInput,
    audio_windows,
    register_backbone,
    require_sample_rate,
)
from extract.backbones.clip import ClipTextBackbone, ClipTextConfig, projected
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.weights import WeightsError
from extract.core.recipe import Recipe

DEFAULT_CHECKPOINT = "laion/clap-htsat-unfused"


class ClapAudioBackbone(NotedBackbone):
    input_kind = "audio"

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        from transformers import ClapFeatureExtractor, ClapModel

        what = f"backbone {config.model}"
        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, what)
        self.extractor = ClapFeatureExtractor.from_pretrained(folder)
        self.model = load_complete(ClapModel, folder, what).to(device)
        fused = bool(self.model.config.audio_config.enable_fusion)
        if fused != (self.extractor.truncation == "fusion"):
            raise WeightsError(
                f"{what}: {folder}'s model has enable_fusion {fused} but its feature extractor truncates by "
                f"{self.extractor.truncation!r}: they must come from one checkpoint"
            )
        self.rate = int(self.extractor.sampling_rate)
        self.window = int(self.extractor.max_length_s * self.rate)
        super().__init__(config, weights, int(self.model.config.projection_dim), device)

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_sample_rate(self, recipe, self.rate)

    def preprocessing(self) -> dict[str, Any]:
        extractor = self.extractor
        return {
            "features": f"ClapFeatureExtractor: {extractor.feature_size} mel bins, hop {extractor.hop_length}",
            "window_s": self.window / self.rate,
            "padding": extractor.padding,
            "truncation": extractor.truncation,
        }

    def units(self, video: VideoInput) -> Units:
        samples = video.rows
        if len(samples) == 0:
            return Units([], np.zeros(0, np.float32), state="no audio")
        windows, times = audio_windows(samples, self.window, self.rate)
        features = self.extractor(windows, sampling_rate=self.rate, return_tensors="pt")
        items = list(zip(features["input_features"], features["is_longer"], strict=True))
        return Units(items, times, state="")

    @torch.inference_mode()
    def embed(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        features, longer = (t.to(self.device) for t in batch)
        with self.autocast():
            output = projected(self.model.get_audio_features(input_features=features, is_longer=longer))
        return F.normalize(output.float(), dim=-1)


class ClapTextBackbone(ClipTextBackbone):
    default_checkpoint = DEFAULT_CHECKPOINT


register_backbone(
    "clap",
    ClapAudioBackbone,
    config_cls=BackboneConfig,
    about=f"transformers CLAP audio tower (default {DEFAULT_CHECKPOINT}), L2-normalised, per 10 s of 48 kHz audio",
    text_tower="clap_text",
)
register_backbone(
    "clap_text",
    ClapTextBackbone,
    config_cls=ClipTextConfig,
    about="CLAP's text tower on captions or transcripts, L2-normalised, in the space of clap's rows",
    text_tower="clap_text",
)
