"""VGGish (torchvggish) on 16 kHz audio: one 128-d row per 0.96 s window.

Default `postprocess: true` writes the AudioSet release form: PCA-whitened, clipped and 8-bit
quantized (values 0..255), as YouTube-8M and PaddleVideo's audio features are. `postprocess:
false` writes the raw embedding. The store records which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extract.backbones import (
    BackboneConfig,
    NotedBackbone,
    Units,
    VideoInput,
    register_backbone,
    require_sample_rate,
)
from extract.backbones.weights import ResolvedWeights, WeightsError, is_local_path, local_files, torch_hub_file
from extract.core.recipe import Recipe

MODEL_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
PCA_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth"
SAMPLE_RATE = 16000
WINDOW_S = 0.96
# A window needs 96 log-mel frames of 10 ms over 25 ms STFT windows: 400 + 95 * 160 samples.
MIN_SAMPLES = 400 + 95 * 160


@dataclass(frozen=True)
class VGGishConfig(BackboneConfig):
    postprocess: bool = True  # PCA + whitening + 8-bit quantization (AudioSet form); false: raw embedding


def load_numpy_checkpoint(path: Path) -> dict:
    """torch.load with weights_only, also allowing plain numpy arrays (the PCA file holds two)."""
    reconstruct = np._core.multiarray._reconstruct
    allowed = [
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        np.dtypes.Float32DType,
        np.dtypes.Float64DType,
    ]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


class VGGishBackbone(NotedBackbone):
    input_kind = "audio"

    def __init__(self, config: VGGishConfig, device: torch.device) -> None:
        import torchvggish

        what = f"backbone {config.model}"
        if config.weights and is_local_path(config.weights):
            folder = local_files(config.weights, what)[0]
            files = (folder / MODEL_URL.rsplit("/", 1)[1], folder / PCA_URL.rsplit("/", 1)[1])
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise WeightsError(f"{what}: {folder} must hold {[f.name for f in files]} (missing {missing})")
            source = "path"
        else:
            files, source = (torch_hub_file(MODEL_URL, what), torch_hub_file(PCA_URL, what)), "torchvggish:audioset"
        model = torchvggish.VGG(torchvggish.make_layers(), postprocess=False)
        try:
            model.load_state_dict(torch.load(files[0], map_location="cpu", weights_only=True))
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise WeightsError(f"{what}: {files[0]} is not a VGGish state dict: {str(exc).splitlines()[0]}") from None
        super().__init__(config, ResolvedWeights(config.weights or "audioset", source, files), 128, device)
        # channels-last convolutions: 1.3x on this CPU (11 against 15 ms a window)
        self.model = model.eval().to(device, memory_format=torch.channels_last)
        self.postprocessor = None
        if config.postprocess:
            pca = load_numpy_checkpoint(files[1])
            # torchvggish's own Postprocessor, given the parameters instead of downloading them
            self.postprocessor = torchvggish.Postprocessor.__new__(torchvggish.Postprocessor)
            self.postprocessor._pca_matrix = torch.as_tensor(pca["pca_eigen_vectors"]).float().to(device)
            self.postprocessor._pca_means = torch.as_tensor(pca["pca_means"].reshape(-1, 1)).float().to(device)

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_sample_rate(self, recipe, SAMPLE_RATE)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "examples": "torchvggish.waveform_to_examples, 0.96 s windows, 16 kHz",
            "postprocess": "pca+quantized" if self.config.postprocess else "raw",
        }

    def units(self, video: VideoInput) -> Units:
        samples = video.rows
        if len(samples) < MIN_SAMPLES:
            note = "no audio" if len(samples) == 0 else f"audio shorter than one {WINDOW_S} s window"
            return Units([], np.zeros(0, np.float32), state=note)
        from torchvggish import waveform_to_examples

        examples = waveform_to_examples(samples.astype(np.float64), SAMPLE_RATE, return_tensor=True).detach()
        return Units(list(examples), (np.arange(len(examples)) * WINDOW_S).astype(np.float32), state="")

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            batch = batch.to(self.device).float().contiguous(memory_format=torch.channels_last)
            embeddings = self.model(batch).float()
        if self.postprocessor is not None:
            embeddings = self.postprocessor.postprocess(embeddings).reshape(len(batch), -1)
        return embeddings.float()


register_backbone(
    "vggish",
    VGGishBackbone,
    config_cls=VGGishConfig,
    about="torchvggish VGGish, 128-d per 0.96 s of audio (AudioSet PCA+quantized by default)",
)
