"""openai-whisper on 16 kHz audio: encoder rows (one per 20 ms) plus transcript, segments and language.

The encoder always sees 30 s windows; rows past the audio's real length are padding and are
dropped. Longer audio goes through consecutive 30 s windows, batched with other videos'. The
success-prediction seed used Whisper base encoder embeddings.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extract.backbones import (
    Backbone,
    BackboneConfig,
    Rows,
    Units,
    VideoInput,
    register_backbone,
    require_sample_rate,
)
from extract.backbones.weights import ResolvedWeights, WeightsError, is_local_path, local_files
from extract.errors import step

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
SAMPLES_PER_ROW = 320  # 10 ms mel hop x encoder stride 2 = 20 ms per encoder row


@dataclass(frozen=True)
class WhisperConfig(BackboneConfig):
    language: str | None = None  # null: detect per video
    transcribe: bool = True  # false: encoder rows only


def whisper_checkpoint(weights: str, what: str) -> tuple[Path, str]:
    """(checkpoint file, source) through whisper's own download root and checksum, or a local file."""
    import whisper

    if is_local_path(weights):
        return local_files(weights, what)[0], "path"
    if weights not in whisper._MODELS:
        raise WeightsError(f"{what}: unknown whisper model {weights!r}; choose one of {whisper.available_models()}")
    url = whisper._MODELS[weights]
    root = Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"  # as whisper does
    try:
        return Path(whisper._download(url, str(root), in_memory=False)), f"whisper:{weights}"
    except Exception as exc:  # offline or checksum mismatch: say what to place where
        raise WeightsError(
            f"{what}: {root / url.rsplit('/', 1)[1]} is missing (or its sha256 is not {url.split('/')[-2]}) and "
            f"could not be downloaded ({type(exc).__name__}). Put the file from {url} there, or set `weights` "
            "to a local whisper checkpoint"
        ) from None


class WhisperBackbone(Backbone):
    input_kind = "audio"
    columns = {"transcript": "str", "language": "str", "segments": "str"}

    def __init__(self, config: WhisperConfig, device: torch.device) -> None:
        import whisper

        what = f"backbone {config.model}"
        path, source = whisper_checkpoint(config.weights or "base", what)
        try:
            self.model = whisper.load_model(str(path), device=device)  # torch.load(weights_only=True) inside
        except (RuntimeError, KeyError, TypeError) as exc:
            raise WeightsError(f"{what}: {path} is not a whisper checkpoint: {str(exc).splitlines()[0]}") from None
        weights = ResolvedWeights(config.weights or "base", source, (path,))
        super().__init__(config, weights, self.model.dims.n_audio_state, device)

    def check_input(self, row_shape: tuple[int, ...], source_config: dict | None = None) -> None:
        require_sample_rate(self, source_config, SAMPLE_RATE)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "mel": f"whisper.log_mel_spectrogram, n_mels={self.model.dims.n_mels}, 30 s windows",
            "rows": "encoder output trimmed to the audio's length, 20 ms each",
            "language": self.config.language,
            "transcribe": self.config.transcribe,
        }

    def units(self, video: VideoInput) -> Units:
        import whisper

        samples = np.asarray(video.rows, np.float32)
        windows, keep = [], []
        for start in range(0, len(samples), WINDOW_SAMPLES):
            chunk = samples[start : start + WINDOW_SAMPLES]
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(chunk)), self.model.dims.n_mels)
            windows.append(mel)
            keep.append(math.ceil(len(chunk) / SAMPLES_PER_ROW))
        times = [
            start / SAMPLE_RATE + np.arange(n) * SAMPLES_PER_ROW / SAMPLE_RATE
            for start, n in zip(range(0, len(samples), WINDOW_SAMPLES), keep, strict=True)
        ]
        timestamps = np.concatenate(times).astype(np.float32) if times else np.zeros(0, np.float32)
        return Units(windows, timestamps, state=keep)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model.encoder(batch.to(self.device)).float()

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        parts = [out[:n] for out, n in zip(outputs, units.state, strict=True)]
        feats = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        columns = {"transcript": "", "language": "", "segments": "[]"}
        if self.config.transcribe and len(video.rows):
            with step("transcription"):
                result = self.model.transcribe(
                    np.asarray(video.rows, np.float32),
                    language=self.config.language,
                    fp16=self.device.type == "cuda",
                    verbose=None,
                )
            segments = [
                {"start": round(s["start"], 3), "end": round(s["end"], 3), "text": s["text"].strip()}
                for s in result["segments"]
            ]
            columns = {
                "transcript": result["text"].strip(),
                "language": result.get("language") or "",
                "segments": json.dumps(segments, ensure_ascii=False),
            }
        return Rows(feats, units.timestamps, columns)


register_backbone(
    "whisper",
    WhisperBackbone,
    config_cls=WhisperConfig,
    about="openai-whisper (default base): encoder rows per 20 ms, transcript, segments, language",
)
