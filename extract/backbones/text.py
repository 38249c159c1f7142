"""BERT-family text encoders (transformers) on captions or Whisper transcripts.

`output: pooled` writes one row per video (CLS, pooler or masked mean); `output: tokens` writes
one row per real token (padding dropped, so the rows are the mask), for TextCNN heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from extract.backbones import Backbone, BackboneConfig, Rows, Units, VideoInput, register_backbone
from extract.backbones.weights import (
    ResolvedWeights,
    WeightsError,
    huggingface_folder,
    is_local_path,
    local_files,
    model_files,
)
from extract.core.config import ConfigError

POOLINGS = ("cls", "pooler", "mean")
OUTPUTS = ("pooled", "tokens")


@dataclass(frozen=True)
class TextConfig(BackboneConfig):
    column: str = "text"  # manifest column read when `input` is the prepared manifest
    pooling: str = "cls"  # cls | pooler | mean (over real tokens)
    output: str = "pooled"  # pooled: a row per video; tokens: a row per token
    max_tokens: int = 50  # PaddleVideo truncated titles to 50

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.pooling not in POOLINGS:
            raise ConfigError(f"{where}.pooling: {self.pooling!r} is not one of {list(POOLINGS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"{where}.output: {self.output!r} is not one of {list(OUTPUTS)}")
        if self.max_tokens < 2:
            raise ConfigError(f"{where}.max_tokens: need room for at least [CLS] and [SEP]")


def huggingface_weights(weights: str, what: str) -> tuple[Any, ResolvedWeights]:
    """(local model folder, resolved weights) for a Hugging Face name or a local folder."""
    if is_local_path(weights, repo_ids=True):
        folder, source = local_files(weights, what)[0], "path"
    else:
        folder, source = huggingface_folder(weights, what), f"huggingface:{weights}"
    return folder, ResolvedWeights(weights, source, model_files(folder))


def load_complete(model_cls: Any, folder: Any, what: str, fix: str = "") -> Any:
    """`model_cls.from_pretrained(folder)`, refused where the folder lacks some of the model's weights:
    transformers would fill them with random values and only warn."""
    model, loading = model_cls.from_pretrained(folder, output_loading_info=True)
    missing = sorted(loading["missing_keys"])
    if missing:
        raise WeightsError(f"{what}: {folder} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}{fix}")
    return model.eval()


class TextBackbone(Backbone):
    input_kind = "text"

    def __init__(self, config: TextConfig, device: torch.device) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder, weights = huggingface_weights(config.weights or "bert-base-uncased", f"backbone {config.model}")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval().to(device)
        super().__init__(config, weights, self.model.config.hidden_size, device)

    def preprocessing(self) -> dict[str, Any]:
        config = self.config
        return {
            "tokenizer": type(self.tokenizer).__name__,
            "max_tokens": config.max_tokens,
            "pooling": config.pooling,
            "output": config.output,
        }

    def units(self, video: VideoInput) -> Units:
        encoded = self.tokenizer(
            video.text or "",
            truncation=True,
            max_length=self.config.max_tokens,
            padding="max_length",
            return_tensors="pt",
        )
        ids, mask = encoded["input_ids"][0], encoded["attention_mask"][0]
        return Units([(ids, mask)], np.zeros(1, np.float32), state=int(mask.sum()))

    @torch.inference_mode()
    def embed(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, mask = (t.to(self.device) for t in batch)
        with self.autocast():
            out = self.model(input_ids=ids, attention_mask=mask)
        hidden = out.last_hidden_state.float()
        if self.config.output == "tokens":
            return hidden
        if self.config.pooling == "cls":
            return hidden[:, 0]
        if self.config.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(f"{self.config.model}: this model has no pooler; use pooling: cls or mean")
            return out.pooler_output.float()
        weights = mask.unsqueeze(-1).float()
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        if self.config.output == "tokens":
            tokens = outputs[0][: units.state]
            return Rows(tokens, np.arange(len(tokens), dtype=np.float32))  # token positions, not seconds
        return super().assemble(video, outputs, units)


register_backbone(
    "bert",
    TextBackbone,
    config_cls=TextConfig,
    about="Hugging Face BERT-family encoder (default bert-base-uncased) on captions or transcripts",
)
