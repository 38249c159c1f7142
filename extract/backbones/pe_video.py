"""Perception Encoder video (transformers `PeVideoModel`) on clip views, and its text tower.

Meta publishes PE video inside its PE audio-video checkpoints (default
`facebook/pe-av-large-16-frame`, Apache-2.0): from such a folder the video model and the shared text
model are loaded alone (`load_pe_video`); a `pe_video` folder loads as it is. Frames are prepared as
the checkpoint's video processor says (size, bilinear, mean and std), on tensors.

`pe_video` reads clips of any length (the `-16-frame` checkpoints were trained on 16: set
`clip_len: 16`). Each frame goes through the PE Core image encoder, pooled by its attention head,
then the video encoder runs over the frames:
- `rows: frame` (default) writes its output per frame, at the frame's time;
- `rows: shared` writes one row per clip, the class token through the video head, L2-normalised,
  in the space of `pe_text` rows, for `kind: zero_shot` heads.

`pe_text` embeds captions or transcripts as `PeVideoModel.forward` does (the text model's last
hidden state at the first token, through the text-video head), L2-normalised; zero-shot heads scale
and shift its cosines by the model's text-video logit scale and bias. (transformers 5.23 defines
`PeVideoModel.get_text_features` and `get_video_features` inside `__init__`, so neither exists on the
model: both towers follow `forward` instead.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from extract.backbones import register_backbone
from extract.backbones.clip import ClipTextBackbone, ClipTextConfig
from extract.backbones.pixels import TensorImageProcessor
from extract.backbones.text import huggingface_weights, load_complete
from extract.backbones.video_transformer import ClipTransformer, SharedSpaceConfig
from extract.backbones.weights import WeightsError

DEFAULT_CHECKPOINT = "facebook/pe-av-large-16-frame"
# where an audio-video checkpoint keeps what a PeVideoModel holds: its video model, and one text model
_FROM_AUDIO_VIDEO = {"video_model.": "", "text_model.": "text_model."}


def load_pe_video(folder: Any, what: str) -> Any:
    """A PeVideoModel from a `pe_video` folder, or the video and text models of a `pe_audio_video` one."""
    from safetensors import safe_open
    from transformers import AutoConfig, PeVideoModel

    config = AutoConfig.from_pretrained(folder)
    if config.model_type == "pe_video":
        return load_complete(PeVideoModel, folder, what)
    if config.model_type != "pe_audio_video":
        raise WeightsError(
            f"{what}: {folder} holds a {config.model_type!r} model, not PE video (pe_video) or PE audio-video "
            f"(pe_audio_video): name a checkpoint such as {DEFAULT_CHECKPOINT}"
        )
    model = PeVideoModel._from_config(config.video_config)
    wanted = set(model.state_dict())
    state = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), "pt") as tensors:
            for key in tensors.keys():  # noqa: SIM118 (safe_open is not a mapping)
                for prefix, renamed in _FROM_AUDIO_VIDEO.items():
                    name = renamed + key.removeprefix(prefix)
                    if key.startswith(prefix) and name in wanted:
                        state[name] = tensors.get_tensor(key)
    missing = sorted(wanted - set(state))
    if missing:
        raise WeightsError(f"{what}: {folder} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    model.load_state_dict(state)
    return model.eval()


class PeVideoBackbone(ClipTransformer):
    def __init__(self, config: SharedSpaceConfig, device: torch.device) -> None:
        from transformers import AutoVideoProcessor

        what = f"backbone {config.model}"
        folder, weights = huggingface_weights(config.weights or DEFAULT_CHECKPOINT, what)
        self.model = load_pe_video(folder, what).to(device)
        settings = AutoVideoProcessor.from_pretrained(folder).to_dict()
        if not settings.get("size"):
            raise WeightsError(f"{what}: {folder}'s video processor names no frame size")
        self.pixels = TensorImageProcessor(settings)
        self.frames_per_clip = None  # PE video takes any number of frames: the view's clip_len
        self.frames_per_row = None if config.rows == "shared" else 1
        shared = config.rows == "shared"
        dim = self.model.config.text_config.hidden_size if shared else self.model.config.video_config.hidden_size
        super().__init__(config, weights, dim, device)

    def preprocessing(self) -> dict[str, Any]:
        return {**self.pixels.describe(), "rows": self.config.rows}

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            out = self.model.video_encoder(pixel_values_videos=batch.to(self.device))
            if self.config.rows == "shared":
                return F.normalize(self.model.video_head(out.pooler_output).float(), dim=-1)
        return out.last_hidden_state.float()  # (B, frames, D)


class PeTextBackbone(ClipTextBackbone):
    default_checkpoint = DEFAULT_CHECKPOINT

    def load_model(self, folder: Any, what: str) -> Any:
        return load_pe_video(folder, what)

    @torch.inference_mode()
    def embed(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, mask = (t.to(self.device) for t in batch)
        with self.autocast():
            text = self.model.text_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            embedded = self.model.text_video_head(text.hidden_states[-1][:, 0])
        return F.normalize(embedded.float(), dim=-1)

    def logit_scale_bias(self) -> tuple[float, float | None]:
        return float(self.model.text_video_logit_scale.detach()), float(self.model.text_video_logit_bias.detach())


register_backbone(
    "pe_video",
    PeVideoBackbone,
    config_cls=SharedSpaceConfig,
    about=f"Perception Encoder video (default {DEFAULT_CHECKPOINT}), a row per frame, or per clip in its text space",
    text_tower="pe_text",
)
register_backbone(
    "pe_text",
    PeTextBackbone,
    config_cls=ClipTextConfig,
    about="PE video's text tower on captions or transcripts, L2-normalised, in pe_video's shared space",
    text_tower="pe_text",
)
