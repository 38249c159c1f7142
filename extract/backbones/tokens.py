"""Patch-token rows, what the ViT families share: the square grid of patch tokens per time step,
optionally averaged over k x k neighbours (`token_pool`), and the outputs of chosen encoder blocks
(`layers`), taken by forward hooks."""

from __future__ import annotations

from typing import Any

import torch

from extract.core.config import ConfigError


def check_rows(rows: str, kinds: tuple[str, ...], token_pool: int, where: str) -> None:
    """A family's `rows` is one it makes; `token_pool` is positive, and above 1 only for token rows."""
    if rows not in kinds:
        raise ConfigError(f"{where}.rows: {rows!r} is not one of {list(kinds)}")
    if token_pool < 1 or (token_pool > 1 and rows != "tokens"):
        raise ConfigError(f"{where}.token_pool: {token_pool}; a positive number, with rows: tokens")


class TokenGrid:
    """A square grid of patch tokens per time step, averaged over `pool` x `pool` neighbours."""

    def __init__(self, side: int, pool: int, what: str) -> None:
        if side % pool:
            raise ConfigError(f"{what}.token_pool: {pool} does not divide its {side} x {side} patch grid")
        self.full, self.pool_size, self.side = side, pool, side // pool

    @property
    def cells(self) -> int:
        return self.side * self.side

    def column(self, clips: int, steps: int) -> str:
        """A video's per-video `token_grid`: "clips x steps x height x width", a row's place by its index."""
        return f"{clips}x{steps}x{self.side}x{self.side}"

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, steps, side^2 patches, D) in row-major order -> (B, steps, cells, D), pooled."""
        batch, steps, patches, dim = tokens.shape
        if patches != self.full * self.full:
            raise RuntimeError(f"{patches} patch tokens per step, expected a {self.full} x {self.full} grid")
        if self.pool_size == 1:
            return tokens
        k, side = self.pool_size, self.side
        grid = tokens.reshape(batch, steps, side, k, side, k, dim)
        return grid.mean(dim=(3, 5)).reshape(batch, steps, self.cells, dim)


class BlockOutputs:
    """The outputs of some encoder blocks (numbered from 1) in each forward pass, by forward hooks."""

    def __init__(self, blocks: torch.nn.ModuleList, numbers: tuple[int, ...]) -> None:
        self.numbers, self.outputs = numbers, {}
        for number in numbers:
            blocks[number - 1].register_forward_hook(self._keep(number))

    def _keep(self, number: int):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            self.outputs[number] = output[0] if isinstance(output, tuple) else output

        return hook

    def pop(self) -> list[torch.Tensor]:
        """The last pass's outputs, in the order the numbers were given."""
        return [self.outputs.pop(number) for number in self.numbers]
