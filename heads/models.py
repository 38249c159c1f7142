"""Head architectures: one encoder per input, concatenated with a missing flag per input, then an
MLP (or a linear probe); and the zero-shot head, which learns nothing.

Encoders: mean/max (pooled once in data.py), attention pooling, BiLSTM with self- or text-guided
attention (PaddleVideo MultimodalVideoTag: alpha_t = softmax_t(v^T tanh(W [h_t ; s]))), a
Transformer encoder with padding masks, TextCNN (windows 2, 3, 4, max over time), and the attentive
probe V-JEPA and V-JEPA 2 evaluate frozen features with (learned queries reading the rows through
cross-attention blocks). Every
sequence encoder ignores padding exactly: the same video gives the same output however much
padding its batch adds.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from heads.config import HeadConfig, InputConfig
from heads.kinds import Task


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 where mask is true; all-masked rows (no rows at all) get zero weights."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    return torch.nan_to_num(weights, nan=0.0)


class AttentionPool(nn.Module):
    """sum_t alpha_t h_t with alpha_t = softmax_t(v^T tanh(W [h_t ; s])); without a guide s, self-attention."""

    def __init__(self, dim: int, guide_dim: int = 0, hidden: int = 128) -> None:
        super().__init__()
        self.proj = nn.Linear(dim + guide_dim, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)

    def weights(self, h: torch.Tensor, mask: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        """alpha (B, L): how much each row counts (the report draws them over the video's frames)."""
        if guide is not None:
            h_in = torch.cat([h, guide.unsqueeze(1).expand(-1, h.shape[1], -1)], dim=-1)
        else:
            h_in = h
        return masked_softmax(self.v(torch.tanh(self.proj(h_in))).squeeze(-1), mask)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        return (self.weights(h, mask, guide).unsqueeze(-1) * h).sum(1)


class LSTMEncoder(nn.Module):
    def __init__(self, spec: InputConfig, dim: int, guide_dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, spec.hidden, num_layers=spec.layers, batch_first=True, bidirectional=True)
        self.pool = AttentionPool(2 * spec.hidden, guide_dim, spec.hidden)
        self.out_dim = 2 * spec.hidden

    def forward(self, rows: torch.Tensor, mask: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        lengths = mask.sum(1)
        packed = pack_padded_sequence(rows, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=rows.shape[1])
        return self.pool(h, mask, guide)


class TransformerInput(nn.Module):
    def __init__(self, spec: InputConfig, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, spec.hidden)
        self.position = nn.Embedding(spec.max_len, spec.hidden)
        heads = spec.attention_heads(spec.hidden)
        layer = nn.TransformerEncoderLayer(spec.hidden, heads, 2 * spec.hidden, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
        self.out_dim = spec.hidden

    def forward(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(rows.shape[1], device=rows.device)
        x = self.proj(rows) + self.position(steps)[None]
        # A video without rows would have every key masked, and attention over nothing is NaN: it
        # attends to its first (zero) position instead, and the masked mean below still gives 0.
        padding = ~mask
        padding[:, 0] &= mask.any(dim=1)
        h = self.encoder(x, src_key_padding_mask=padding)
        weights = mask.unsqueeze(-1).float()
        return (h * weights).sum(1) / weights.sum(1).clamp(min=1)


class CrossAttentionBlock(nn.Module):
    """V-JEPA's: q + attn(q, norm(rows)), then q + mlp(norm(q)), the MLP 4 times as wide."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_rows = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_queries = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))

    def forward(
        self, queries: torch.Tensor, rows: torch.Tensor, padding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the queries after the block, attention weights (B, Q, L) averaged over heads)."""
        keys = self.norm_rows(rows)
        read, weights = self.attention(queries, keys, keys, key_padding_mask=padding, need_weights=True)
        queries = queries + read
        return queries + self.mlp(self.norm_queries(queries)), weights


class AttentiveProbe(nn.Module):
    """`queries` learned tokens read a video's rows through `blocks` cross-attention blocks, padding
    masked; out: the queries side by side (B, queries * D), for the task's linear layer (`hidden: []`)
    or an MLP. Defaults are V-JEPA's AttentivePooler: 1 query, 1 block, 16 heads, no dropout.
    V-JEPA 2's evaluation probe first passes the rows through `self_blocks` (3) pre-norm
    self-attention blocks (MLP 4x wide, GELU), then one cross-attention block reads them."""

    def __init__(self, dim: int, queries: int, blocks: int, heads: int, dropout: float, self_blocks: int = 0) -> None:
        super().__init__()
        self.queries = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, queries, dim), std=0.02))
        self.self_blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, "gelu", batch_first=True, norm_first=True)
            for _ in range(self_blocks)
        )
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads, dropout) for _ in range(blocks))
        self.out_dim = queries * dim

    def _read(self, rows: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A video without rows would have every key masked, and attention over nothing is NaN: it
        # reads its first (zero) position instead; its missing flag tells the head it had none.
        padding = ~mask
        padding[:, 0] &= mask.any(dim=1)
        for block in self.self_blocks:
            rows = block(rows, src_key_padding_mask=padding)
        queries, weights = self.queries.expand(len(rows), -1, -1), None
        for block in self.blocks:
            queries, weights = block(queries, rows, padding)
        return queries, weights

    def weights(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """How much each row counts (B, L): the last block's attention, averaged over the queries (the
        report draws it over the video's frames)."""
        return self._read(rows, mask)[1].mean(dim=1) * mask

    def forward(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._read(rows, mask)[0].flatten(1)


class TextCNN(nn.Module):
    def __init__(self, spec: InputConfig, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, spec.filters, k) for k in spec.windows)
        self.out_dim = spec.filters * len(spec.windows)

    def forward(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = rows.transpose(1, 2)  # (B, D, L)
        lengths = mask.sum(1)
        pooled = []
        for conv in self.convs:
            k = conv.kernel_size[0]
            if x.shape[2] < k:
                x = nn.functional.pad(x, (0, k - x.shape[2]))
            y = torch.relu(conv(x))  # (B, F, L - k + 1)
            # only windows lying wholly on real tokens count, so padding never changes the max
            valid = torch.arange(y.shape[2], device=y.device)[None] <= (lengths[:, None] - k)
            y = y.masked_fill(~valid.unsqueeze(1), float("-inf")).max(dim=2).values
            pooled.append(torch.where(torch.isinf(y), torch.zeros_like(y), y))
        return torch.cat(pooled, dim=1)


class HeadModel(nn.Module):
    def __init__(self, config: HeadConfig, dims: dict[str, int], task: Task) -> None:
        super().__init__()
        self.config, self.task = config, task
        self.encoders = nn.ModuleDict()
        width = 0
        for spec in config.inputs:
            dim = dims[spec.key]
            if spec.pool in ("mean", "max"):
                encoder, out_dim = nn.Identity(), dim
            elif spec.pool == "attention":
                encoder, out_dim = AttentionPool(dim, 0, spec.hidden), dim
            elif spec.pool == "lstm":
                encoder = LSTMEncoder(spec, dim, dims[spec.guide] if spec.guide else 0)
                out_dim = encoder.out_dim
            elif spec.pool == "transformer":
                encoder = TransformerInput(spec, dim)
                out_dim = encoder.out_dim
            elif spec.pool == "attentive_probe":
                encoder = AttentiveProbe(
                    dim, spec.queries, spec.blocks, spec.attention_heads(dim), spec.dropout, spec.self_blocks
                )
                out_dim = encoder.out_dim
            else:
                encoder = TextCNN(spec, dim)
                out_dim = encoder.out_dim
            self.encoders[spec.key] = encoder
            width += out_dim
        width += len(config.inputs)  # a missing flag per input
        layers: list[nn.Module] = []
        for size in config.hidden:
            layers += [nn.Dropout(config.dropout), nn.Linear(width, size), nn.ReLU()]
            width = size
        layers += [nn.Dropout(config.dropout), nn.Linear(width, task.out_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: dict[str, object], targets: torch.Tensor | None = None):
        """(logits, loss); loss is None without targets."""
        parts = []
        for spec in self.config.inputs:
            value, encoder = x[spec.key], self.encoders[spec.key]
            if spec.pool in ("mean", "max"):
                parts.append(value)
            elif spec.pool == "lstm":
                parts.append(encoder(*value, x[spec.guide] if spec.guide else None))
            else:
                parts.append(encoder(*value))
        parts.append(x["missing"])
        logits = self.mlp(torch.cat(parts, dim=1))
        return logits, (self.task.loss(logits, targets) if targets is not None else None)


class ZeroShotHead(nn.Module):
    """Scores labels by the cosine between a video's mean-pooled rows and each label's text embedding,
    both in an image-text model's shared space (CLIP, SigLIP), averaged over the inputs the video has.

    Logits are the model's own scale (and bias) applied to those cosines, so `Task.scores` turns them
    into probabilities as for a trained head: multi_class takes CLIP's softmax over labels; binary weighs
    the label against a negative prompt (a two-way softmax, as a sigmoid of the difference);
    multi_label takes a sigmoid per label, with SigLIP's trained bias where the model has one. CLIP
    was trained without one, and its scaled cosines (about 20-30) saturate a sigmoid, so each video's
    cosines are centred on their mean over the labels instead.
    """

    def __init__(self, config: HeadConfig, dims: dict[str, int], task: Task) -> None:
        super().__init__()
        self.config, self.task = config, task
        width = {dims[spec.key] for spec in config.inputs}
        if len(width) != 1:
            raise ValueError(f"zero-shot inputs must share one embedding width, got {sorted(width)}")
        labels = task.out_dim + task.kind.negative_prompt  # binary: the label, then the negative prompt
        self.register_buffer("labels", torch.zeros(labels, width.pop()))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("bias", torch.tensor(0.0))
        self.register_buffer("centred", torch.tensor(False))

    def set_labels(self, embeddings: torch.Tensor, scale: float, bias: float | None) -> None:
        """Label embeddings (L2-normalised here) and the model's logit scale and bias (None: centre)."""
        self.labels.copy_(nn.functional.normalize(embeddings.float(), dim=-1))
        self.scale.fill_(scale)
        self.bias.fill_(bias or 0.0)
        self.centred.fill_(bias is None)

    def forward(self, x: dict[str, object], targets: torch.Tensor | None = None):
        """(logits, None): there is nothing to train, so no loss."""
        present = 1.0 - x["missing"]  # (B, inputs)
        cosines = torch.zeros(present.shape[0], self.labels.shape[0])
        for j, spec in enumerate(self.config.inputs):
            pooled = nn.functional.normalize(x[spec.key].float(), dim=-1)
            cosines += present[:, j : j + 1] * (pooled @ self.labels.T)
        cosines /= present.sum(1, keepdim=True).clamp(min=1)
        return self.task.kind.zero_shot_logits(cosines, self.scale, self.bias, bool(self.centred)), None


def build_head(config: HeadConfig, dims: dict[str, int], task: Task) -> HeadModel | ZeroShotHead:
    """The head a config describes, its parameters freshly initialised (or label buffers empty)."""
    if config.kind == "zero_shot":
        return ZeroShotHead(config, dims, task)
    return HeadModel(config, dims, task)
