"""Seeded, deterministic training for the length of one call, the process's own settings put back.

`train` and `train-encoder` promise the same weights from the same data and seed. They need torch's
deterministic algorithms and a seeded generator, but a notebook that calls them keeps its own
settings and random state afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def deterministic(seed: int) -> Iterator[np.random.Generator]:
    """torch seeded with `seed` and held to deterministic algorithms inside the block; yields a numpy
    generator seeded alike. On leaving, torch's random state and algorithm setting are restored."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield np.random.default_rng(seed)
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.random.set_rng_state(state)
