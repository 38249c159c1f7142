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
from extract.core.errors import step
from extract.core.recipe import Recipe

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
HOP_SAMPLES = 160  # 10 ms per mel frame
FRAMES_PER_WINDOW = WINDOW_SAMPLES // HOP_SAMPLES
SAMPLES_PER_ROW = 320  # 10 ms mel hop x encoder stride 2 = 20 ms per encoder row
SECONDS_PER_ROW = SAMPLES_PER_ROW / SAMPLE_RATE  # also the step of whisper's timestamp tokens
# transcribe's defaults: a decode past these limits is retried hotter, or (no speech) skipped
COMPRESSION_RATIO_LIMIT, LOGPROB_LIMIT, NO_SPEECH_LIMIT = 2.4, -1.0, 0.6


@dataclass
class WindowState:
    """Per video: encoder rows kept per window, mel frames of real audio, and a transcript decoded in a batch."""

    keep: list[int]
    content_frames: int
    transcript: dict[str, str] | None = None


@dataclass(frozen=True)
class WhisperConfig(BackboneConfig):
    language: str | None = None  # null: detect per video
    transcribe: bool = True  # false: encoder rows only


def whisper_checkpoint(weights: str, what: str) -> tuple[Path, str]:
    """(checkpoint file, source) through whisper's own download root and checksum, or a local file.

    whisper has no public call that returns a model's file (its recipe records the file's sha256), so
    this uses `whisper._MODELS` and `whisper._download`; a test fails when an upgrade changes them."""
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
        self.transcripts_batched = 0  # videos whose transcript came from the batched decode
        if not config.transcribe:  # encoder rows only: the store holds no empty transcript columns
            self.columns = {}

    def check_input(self, row_shape: tuple[int, ...], recipe: Recipe | None = None) -> None:
        require_sample_rate(self, recipe, SAMPLE_RATE)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "mel": f"whisper.log_mel_spectrogram, n_mels={self.model.dims.n_mels}, over the whole audio as "
            "transcribe makes it, in 30 s windows (the last padded with zeros)",
            "rows": "encoder output trimmed to the audio's length, 20 ms each",
            "language": self.config.language,
            "transcribe": self.config.transcribe,
        }

    def units(self, video: VideoInput) -> Units:
        """30 s windows of the log-mel spectrogram, made as `transcribe` makes them (the whole audio's
        spectrogram, cut into windows, the last one padded with zeros), so one encoder pass serves
        both the rows and the transcript."""
        import whisper

        samples = torch.from_numpy(np.asarray(video.rows, np.float32))
        mel = whisper.log_mel_spectrogram(samples, self.model.dims.n_mels, padding=WINDOW_SAMPLES)
        content_frames = mel.shape[-1] - FRAMES_PER_WINDOW
        windows, keep, starts = [], [], []
        for seek in range(0, content_frames, FRAMES_PER_WINDOW):
            size = min(FRAMES_PER_WINDOW, content_frames - seek)  # real audio only; the rest zeros
            windows.append(whisper.pad_or_trim(mel[:, seek : seek + size], FRAMES_PER_WINDOW))
            start = seek * HOP_SAMPLES
            keep.append(math.ceil(min(WINDOW_SAMPLES, len(samples) - start) / SAMPLES_PER_ROW))
            starts.append(start)
        times = [start / SAMPLE_RATE + np.arange(n) * SECONDS_PER_ROW for start, n in zip(starts, keep, strict=True)]
        timestamps = np.concatenate(times).astype(np.float32) if times else np.zeros(0, np.float32)
        return Units(windows, timestamps, state=WindowState(keep, content_frames))

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model.encoder(batch.to(self.device)).float()

    def before_assemble(self, finished: list[tuple[VideoInput, list[np.ndarray], Units]]) -> None:
        """Transcripts of the finished videos that fit one window, decoded in one batch from the encoder
        output already computed. A video whose decode `transcribe` would not stop at (a retry at a
        higher temperature, or an unfinished last segment) is left to `assemble`, which transcribes it
        the long way; so is every video if the batch fails (each then fails or succeeds alone)."""
        import whisper

        short = [(units.state, outputs[0]) for _, outputs, units in finished if len(outputs) == 1]
        if not self.config.transcribe or not short:
            return
        half = self.device.type == "cuda"
        features = torch.from_numpy(np.stack([out for _, out in short])).to(self.device)
        # as transcribe: English-only models are told their language; others detect it per video
        language = self.config.language or (None if self.model.is_multilingual else "en")
        options = whisper.DecodingOptions(language=language, temperature=0.0, fp16=half)
        try:
            results = whisper.decode(self.model, features.half() if half else features, options)
        except Exception:  # noqa: BLE001 - left to the per-video path, where a failure is recorded
            return
        for (state, _), result in zip(short, results, strict=True):
            state.transcript = self._as_transcribe_would(result, state.content_frames)
            self.transcripts_batched += state.transcript is not None

    def _as_transcribe_would(self, result: Any, content_frames: int) -> dict[str, str] | None:
        """The columns `model.transcribe` gives for audio of one window whose first decode is `result`
        (openai-whisper's transcribe loop for that case), or None where it would decode again."""
        from whisper.tokenizer import get_tokenizer

        silence = result.no_speech_prob > NO_SPEECH_LIMIT and result.avg_logprob < LOGPROB_LIMIT
        if (result.compression_ratio > COMPRESSION_RATIO_LIMIT or result.avg_logprob < LOGPROB_LIMIT) and not silence:
            return None  # transcribe retries at a higher temperature
        language = result.language or ""
        if result.no_speech_prob > NO_SPEECH_LIMIT and not result.avg_logprob > LOGPROB_LIMIT:
            return {"transcript": "", "language": language, "segments": "[]"}  # silence: skipped
        tokenizer = get_tokenizer(
            self.model.is_multilingual, num_languages=self.model.num_languages, language=language, task="transcribe"
        )
        tokens = torch.tensor(result.tokens)

        def seconds(token: torch.Tensor) -> float:
            return (token.item() - tokenizer.timestamp_begin) * SECONDS_PER_ROW

        is_time = tokens.ge(tokenizer.timestamp_begin)
        single_ending = is_time[-2:].tolist() == [False, True]
        consecutive = (torch.where(is_time[:-1] & is_time[1:])[0] + 1).tolist()
        if consecutive:
            if not single_ending:
                return None  # transcribe would seek to the last timestamp and decode again
            cuts = [0, *consecutive, len(tokens)]
            pieces = [tokens[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
            spans = [(seconds(p[0]), seconds(p[-1])) for p in pieces]
        else:
            end = content_frames * HOP_SAMPLES / SAMPLE_RATE
            stamps = tokens[is_time.nonzero().flatten()]
            if len(stamps) and stamps[-1].item() != tokenizer.timestamp_begin:
                end = seconds(stamps[-1])
            pieces, spans = [tokens], [(0.0, end)]
        segments, kept = [], []
        for piece, (start, end) in zip(pieces, spans, strict=True):
            text = tokenizer.decode([t for t in piece.tolist() if t < tokenizer.eot])
            if start == end or not text.strip():  # transcribe clears these
                piece, text = piece[:0], ""
            kept += piece.tolist()
            segments.append({"start": round(start, 3), "end": round(end, 3), "text": text.strip()})
        return {
            "transcript": tokenizer.decode(kept).strip(),
            "language": language,
            "segments": json.dumps(segments, ensure_ascii=False),
        }

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        state = units.state
        parts = [out[:n] for out, n in zip(outputs, state.keep, strict=True)]
        feats = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        columns = {"transcript": "", "language": "", "segments": "[]"} if self.columns else {}
        if self.config.transcribe and len(video.rows):
            columns = state.transcript or self._transcribe(video)
        return Rows(feats, units.timestamps, columns)

    def _transcribe(self, video: VideoInput) -> dict[str, str]:
        """The long-form path: `model.transcribe` over the whole audio (it encodes the audio again)."""
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
        return {
            "transcript": result["text"].strip(),
            "language": result.get("language") or "",
            "segments": json.dumps(segments, ensure_ascii=False),
        }


register_backbone(
    "whisper",
    WhisperBackbone,
    config_cls=WhisperConfig,
    about="openai-whisper (default base): encoder rows per 20 ms, transcript, segments, language",
)
