"""Head architectures: one encoder per input, concatenated with a missing flag per input, then an
MLP (or a linear probe).

Encoders: mean/max (pooled once in data.py), attention pooling, BiLSTM with self- or text-guided
attention (PaddleVideo MultimodalVideoTag: alpha_t = softmax_t(v^T tanh(W [h_t ; s]))), a
Transformer encoder with padding masks, and TextCNN (windows 2, 3, 4, max over time). Every
sequence encoder ignores padding exactly: the same video gives the same output however much
padding its batch adds.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from heads.config import HeadConfig, InputConfig
from heads.tasks import Task


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

    def forward(self, h: torch.Tensor, mask: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        if guide is not None:
            h_in = torch.cat([h, guide.unsqueeze(1).expand(-1, h.shape[1], -1)], dim=-1)
        else:
            h_in = h
        alpha = masked_softmax(self.v(torch.tanh(self.proj(h_in))).squeeze(-1), mask)
        return (alpha.unsqueeze(-1) * h).sum(1)


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
        layer = nn.TransformerEncoderLayer(spec.hidden, spec.heads, 2 * spec.hidden, dropout=0.1, batch_first=True)
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
