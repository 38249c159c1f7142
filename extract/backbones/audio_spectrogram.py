"""AST, the Audio Spectrogram Transformer (transformers `ASTModel`), on 16 kHz audio: one row per window.

A window is what the checkpoint's `ASTFeatureExtractor` takes: `max_length` frames of 10 ms
(1024: 10.24 s for the AudioSet checkpoints), as 128 Kaldi log-mel bins normalized with the
checkpoint's mean and std. Windows follow each other without overlap; the last, shorter one is
padded by the extractor as AST pads its own AudioSet clips. `output: embedding` (default) writes
the pooled vector (the mean of the [CLS] and distillation tokens after the last layer norm);
`output: logits` writes the classifier's scores, 527 AudioSet classes for the default checkpoint
`MIT/ast-finetuned-audioset-10-10-0.4593` (BSD-3-Clause), and refuses a checkpoint without a
trained classifier instead of scoring with a random one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from extract.backbones import (
    BackboneConfig,
    NotedBackbone,
    Units,
    VideoInput,
    audio_windows,
    register_backbone,
    require_sample_rate,
)
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.weights import WeightsError
from extract.core.config import ConfigError
from extract.core.recipe import Recipe

DEFAULT_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
SAMPLE_RATE = 16000
HOP_SAMPLES = 160  # the extractor's 10 ms frame shift
MIN_SAMPLES = 400  # one 25 ms Kaldi frame: less audio than this has no spectrogram
OUTPUTS = ("embedding", "logits")


@dataclass(frozen=True)
class ASTConfig(BackboneConfig):
    output: str = "embedding"  # embedding: the pooled vector; logits: the classifier's class scores

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.output not in OUTPUTS:
            raise ConfigError(f"{where}.output: {self.output!r} is not one of {list(OUTPUTS)}")


class ASTBackbone(NotedBackbone):
    input_kind = "audio"

    def __init__(self, config: ASTConfig, device: torch.device) -> None:
        from transformers import ASTFeatureExtractor, ASTForAudioClassification, ASTModel

        what = f"backbone {config.model}"
        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, what)
        self.extractor = ASTFeatureExtractor.from_pretrained(folder)
        model_cls = ASTForAudioClassification if config.output == "logits" else ASTModel
        fix = "; use a checkpoint fine-tuned for classification, or output: embedding"
        model = load_complete(model_cls, folder, what, fix if config.output == "logits" else "")
        model_config = model.config
        if (model_config.max_length, model_config.num_mel_bins) != (
            self.extractor.max_length,
            self.extractor.num_mel_bins,
        ):
            raise WeightsError(
                f"{what}: {folder}'s model takes {model_config.max_length} frames of {model_config.num_mel_bins} bins, "
                f"its feature extractor gives {self.extractor.max_length} of {self.extractor.num_mel_bins}"
            )
        self.model = model.eval().to(device)
        self.window = self.extractor.max_length * HOP_SAMPLES
        dim = model_config.num_labels if config.output == "logits" else model_config.hidden_size
        super().__init__(config, weights, dim, device)

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_sample_rate(self, recipe, SAMPLE_RATE)

    def preprocessing(self) -> dict[str, Any]:
        extractor = self.extractor
        return {
            "features": "ASTFeatureExtractor: Kaldi log-mel fbank, 25 ms windows, 10 ms shift",
            "mel_bins": extractor.num_mel_bins,
            "window_s": self.window / SAMPLE_RATE,
            "normalize": [extractor.mean, extractor.std] if extractor.do_normalize else None,
            "output": self.config.output,
        }

    def units(self, video: VideoInput) -> Units:
        samples = video.rows
        if len(samples) < MIN_SAMPLES:
            note = "no audio" if len(samples) == 0 else "audio shorter than one 25 ms spectrogram frame"
            return Units([], np.zeros(0, np.float32), state=note)
        # a tail shorter than one frame has no spectrogram of its own
        windows, times = audio_windows(samples, self.window, SAMPLE_RATE, shortest=MIN_SAMPLES)
        features = self.extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_values"]
        return Units(list(features), times, state="")

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            output = self.model(input_values=batch.to(self.device))
        return (output.logits if self.config.output == "logits" else output.pooler_output).float()


register_backbone(
    "ast",
    ASTBackbone,
    config_cls=ASTConfig,
    about=f"transformers AST (default {DEFAULT_CHECKPOINT}), pooled or AudioSet logits, per 10.24 s of audio",
)
