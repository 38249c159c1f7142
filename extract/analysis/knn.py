"""The exact kNN search of a feature store: unit rows (each video's mean row, L2-normalised) and the
k nearest of each, by cosine. Exact: the unit rows are multiplied a block of queries at a time (so
memory stays at a block times the store), on every core, in float32."""

from __future__ import annotations

import numpy as np

from extract.core.config import ConfigError
from extract.store import StoreReader

QUERY_BLOCK = 2048  # rows per matrix product: 2048 x 10^5 float32 cosines are 0.8 GB, the one buffer


def unit_rows(reader: StoreReader) -> tuple[np.ndarray, np.ndarray]:
    """(the videos' mean rows L2-normalised, float32; whether each video has rows)."""
    if len(reader.row_shape) != 1:
        raise ConfigError(f"{reader.path} holds rows of shape {reader.row_shape}, not features: name data/features/*")
    pooled = reader.pooled()
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    has_rows = (reader.row_counts > 0) & (norms[:, 0] > 0)
    return np.divide(pooled, norms, out=np.zeros_like(pooled), where=norms > 0), has_rows


def knn_graph(
    units: np.ndarray, k: int, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every row's k nearest other rows, best first, exactly: (indices, cosines), each (rows, k); and,
    with `threshold`, (i, j, cosine) of every pair i < j at or above it.

    The cosine matrix is symmetric, so each block of rows is multiplied only with the rows from its
    own onwards (half the products): a block's rows take their candidates from that strip, and the
    rows after it take theirs from its transpose; each row keeps its best k as the blocks go."""
    import torch

    n = len(units)
    k = max(0, min(k, n - 1))
    table = torch.from_numpy(np.ascontiguousarray(units, np.float32))
    best = torch.full((n, k), -torch.inf)
    best_index = torch.full((n, k), -1, dtype=torch.long)
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    flat = torch.empty(min(QUERY_BLOCK, n) * n)  # one buffer for every block's products
    for start in range(0, n, QUERY_BLOCK):
        end = min(start + QUERY_BLOCK, n)
        strip = flat[: (end - start) * (n - start)].view(end - start, n - start)
        torch.matmul(table[start:end], table[start:].T, out=strip)
        own = torch.arange(end - start)
        strip[own, own] = -torch.inf  # a row is not its own neighbour
        if threshold is not None:
            rows, cols = torch.nonzero(strip >= threshold, as_tuple=True)
            upper = cols > rows  # within the block, each pair once
            rows, cols = rows[upper], cols[upper]
            pairs.append(((rows + start).numpy(), (cols + start).numpy(), strip[rows, cols].numpy()))
        if not k:
            continue
        found = torch.topk(strip, min(k, n - start), dim=1)
        _merge(best, best_index, start, end, found.values, found.indices + start, k)
        if end < n:  # the later rows' candidates among this block's rows
            later = strip[:, end - start :]
            if start == 0 or end - start < k:  # their first k candidates: every value counts
                found = torch.topk(later.T.contiguous(), min(k, end - start), dim=1)
                _merge(best, best_index, end, n, found.values, found.indices + start, k)
            else:  # only values above a row's k-th best can enter it: few, found in one pass
                rows, cols = torch.nonzero(later > best[end:, -1], as_tuple=True)
                if len(cols):
                    _merge_sparse(best, best_index, end, cols, later[rows, cols], rows + start, k)
    joined = tuple(np.concatenate(part) for part in zip(*pairs, strict=True)) if pairs else ()
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return best_index.numpy(), best.numpy(), joined or empty  # type: ignore[return-value]


def _merge(best, best_index, start: int, end: int, values, indices, k: int) -> None:
    """Keep rows start..end's best k of what they had and the new candidates."""
    import torch

    values = torch.cat([best[start:end], values], dim=1)
    indices = torch.cat([best_index[start:end], indices], dim=1)
    top = torch.topk(values, k, dim=1)
    best[start:end] = top.values
    best_index[start:end] = torch.gather(indices, 1, top.indices)


def _merge_sparse(best, best_index, offset: int, targets, values, indices, k: int) -> None:
    """Merge candidates given one by one (row `offset + targets[i]` may take `indices[i]` at `values[i]`)."""
    import torch

    order = torch.argsort(targets, stable=True)
    targets, values, indices = targets[order], values[order], indices[order]
    rows, counts = torch.unique_consecutive(targets, return_counts=True)
    slot = torch.arange(len(targets)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    group = torch.repeat_interleave(torch.arange(len(rows)), counts)
    dense = torch.full((len(rows), int(counts.max())), -torch.inf)
    dense_index = torch.full(dense.shape, -1, dtype=torch.long)
    dense[group, slot], dense_index[group, slot] = values, indices
    rows = rows + offset
    merged = torch.cat([best[rows], dense], dim=1)
    merged_index = torch.cat([best_index[rows], dense_index], dim=1)
    top = torch.topk(merged, k, dim=1)
    best[rows] = top.values
    best_index[rows] = torch.gather(merged_index, 1, top.indices)


def nearest(units: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosines), each (len(queries), k): the k rows of `units` nearest each unit vector of
    `queries`, best first, exactly, a block of queries at a time."""
    import torch

    table = torch.from_numpy(np.ascontiguousarray(units, np.float32))
    k = min(k, len(units))
    found_index, found_cosine = [np.zeros((0, k), np.int64)], [np.zeros((0, k), np.float32)]
    for start in range(0, len(queries), QUERY_BLOCK):
        block = torch.from_numpy(np.ascontiguousarray(queries[start : start + QUERY_BLOCK], np.float32))
        best = torch.topk(block @ table.T, k, dim=1)
        found_index.append(best.indices.numpy())
        found_cosine.append(best.values.numpy())
    return np.concatenate(found_index), np.concatenate(found_cosine)
