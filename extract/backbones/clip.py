"""CLIP-family image-text models (transformers): rows in the model's shared space, L2-normalised.

`clip` reads a frames view (one row per frame, `get_image_features`); `clip_text` reads captions
or Whisper transcripts (one row per video, `get_text_features`). Any checkpoint that
`transformers.AutoModel` loads with those two methods works (CLIP, SigLIP, SigLIP2), by Hugging
Face name or local folder. Images are prepared as the checkpoint's image processor says (its
sizes, crop, mean and std) but on tensors, without PIL (`extract.backbones.pixels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from extract.backbones import Backbone, BackboneConfig, Rows, Units, VideoInput, register_backbone
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.tokens import TokenGrid, check_rows
from extract.core.config import ConfigError

DEFAULT_CHECKPOINT = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class ClipTextConfig(BackboneConfig):
    column: str = "text"  # manifest column read when `input` is the prepared manifest
    max_tokens: int = 77  # CLIP's context; a checkpoint with a shorter one caps it

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.max_tokens < 2:
            raise ConfigError(f"{where}.max_tokens: need room for at least the start and end tokens")


def projected(output: Any) -> torch.Tensor:
    """The projected embeddings: transformers 5 returns them as `pooler_output`, older releases bare."""
    return output.pooler_output if hasattr(output, "pooler_output") else output


class _ClipModel(Backbone):
    """Loads the model and the processor settings both towers need."""

    default_checkpoint = DEFAULT_CHECKPOINT

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        folder, weights = huggingface_weights(config.weights or self.default_checkpoint, f"backbone {config.model}")
        self.folder = folder
        self.model = self.load_model(folder, f"backbone {config.model}").to(device)
        dim = getattr(self.model.config, "projection_dim", None) or self.model.config.text_config.hidden_size
        super().__init__(config, weights, int(dim), device)

    def load_model(self, folder: Any, what: str) -> Any:
        from transformers import AutoModel

        return load_complete(AutoModel, folder, what)


@dataclass(frozen=True)
class ClipImageConfig(BackboneConfig):
    rows: str = "shared"  # shared: one row per frame in the image-text space; tokens: the image tower's patch tokens
    token_pool: int = 1  # rows: tokens: average k x k neighbouring patches
    in_recipe_when_set: ClassVar[tuple[str, ...]] = ("rows", "token_pool")

    def validate(self, where: str) -> None:
        super().validate(where)
        check_rows(self.rows, ("shared", "tokens"), self.token_pool, where)


class ClipImageBackbone(_ClipModel):
    input_kind = "frames"

    def __init__(self, config: ClipImageConfig, device: torch.device) -> None:
        from transformers import AutoImageProcessor

        super().__init__(config, device)
        self.pixels = TensorImageProcessor(AutoImageProcessor.from_pretrained(self.folder).to_dict())
        self.grid = None
        if config.rows == "tokens":
            vision = self.model.config.vision_config
            self.grid = TokenGrid(vision.image_size // vision.patch_size, config.token_pool, f"backbone {config.model}")
            self.dim = int(vision.hidden_size)
            self.columns = {"token_grid": "str"}

    def preprocessing(self) -> dict[str, Any]:
        if self.grid is not None:
            return {**self.pixels.describe(), "rows": "tokens", "token_pool": self.config.token_pool}
        return self.pixels.describe()

    def units(self, video: VideoInput) -> Units:
        frames = video.tensor().permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
        times = np.asarray(video.timestamps, np.float32)
        return Units(list(self.pixels(frames)), times if self.grid is None else np.repeat(times, self.grid.cells))

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            if self.grid is not None:
                tokens = self.model.vision_model(pixel_values=batch.to(self.device)).last_hidden_state.float()
                patches = tokens[:, tokens.shape[1] - self.grid.full**2 :]  # CLIP's class token first; SigLIP has none
                return self.grid.pool(patches[:, None]).flatten(1, 2)  # (frames, cells, D)
            features = projected(self.model.get_image_features(pixel_values=batch.to(self.device)))
        return F.normalize(features.float(), dim=-1)

    def assemble(self, video: VideoInput, outputs: list[np.ndarray], units: Units) -> Rows:
        if self.grid is None:
            return super().assemble(video, outputs, units)
        feats = np.concatenate(outputs) if outputs else np.zeros((0, self.dim), np.float32)
        return Rows(feats, units.timestamps, {"token_grid": self.grid.column(len(outputs), 1)})  # a frame: one step


class ClipTextBackbone(_ClipModel):
    input_kind = "text"

    def __init__(self, config: ClipTextConfig, device: torch.device) -> None:
        from transformers import AutoTokenizer

        super().__init__(config, device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.max_tokens = min(config.max_tokens, int(self.model.config.text_config.max_position_embeddings))

    def preprocessing(self) -> dict[str, Any]:
        return {"tokenizer": type(self.tokenizer).__name__, "max_tokens": self.max_tokens}

    def units(self, video: VideoInput) -> Units:
        encoded = self.tokenizer(
            video.text or "", truncation=True, max_length=self.max_tokens, padding="max_length", return_tensors="pt"
        )
        return Units([(encoded["input_ids"][0], encoded["attention_mask"][0])], np.zeros(1, np.float32))

    @torch.inference_mode()
    def embed(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, mask = (t.to(self.device) for t in batch)
        with self.autocast():
            features = projected(self.model.get_text_features(input_ids=ids, attention_mask=mask))
        return F.normalize(features.float(), dim=-1)

    def logit_scale_bias(self) -> tuple[float, float | None]:
        """How the model turns a cosine between this tower's rows and the other's into a logit:
        CLIP and SigLIP keep one scale (SigLIP a bias too), CLAP one per tower, the audio one for
        audio against text; a model with none (VideoPrism) scores the plain cosine."""
        model = self.model
        scale = getattr(model, "logit_scale", None)
        scale = getattr(model, "logit_scale_a", None) if scale is None else scale
        bias = getattr(model, "logit_bias", None)
        return (
            float(scale.detach().exp()) if scale is not None else 1.0,
            float(bias.detach()) if bias is not None else None,
        )


register_backbone(
    "clip",
    ClipImageBackbone,
    config_cls=ClipImageConfig,
    about=f"transformers CLIP/SigLIP image tower (default {DEFAULT_CHECKPOINT}), L2-normalised, per frame",
    text_tower="clip_text",
)
register_backbone(
    "clip_text",
    ClipTextBackbone,
    config_cls=ClipTextConfig,
    about="the same models' text tower on captions or transcripts, L2-normalised, per video",
    text_tower="clip_text",
)
