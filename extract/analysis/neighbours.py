"""`neighbours`: the videos of a store nearest one of its videos, or a new video embedded with the
store's own recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.analysis.knn import nearest, unit_rows
from extract.core.config import ConfigError
from extract.stages.manifest import read_prepared
from extract.store import StoreReader


@dataclass
class Neighbour:
    id: str
    cosine: float
    split: str
    caption: str


def neighbours(
    store: str | Path,
    k: int,
    vid: str | None = None,
    query: np.ndarray | None = None,
    manifest: str | Path | None = None,
    caption: str = "text",
) -> list[Neighbour]:
    """The k videos of `store` nearest video `vid` of the store, or the unit row `query`, best first,
    with their split and caption from `manifest` (where given)."""
    if k < 1:
        raise ConfigError(f"neighbours: -k {k}: ask for 1 or more")
    reader = StoreReader(store)
    ids = reader.ids
    units, has_rows = unit_rows(reader)
    if vid is not None:
        if vid not in reader:
            raise ConfigError(
                f"{store} has no video {vid!r}: name an id of its manifest (python -m extract info {store})"
            )
        if len(ids) < 2:
            raise ConfigError(f"{store} holds one video, {vid!r}: it has no neighbours")
        position = ids.index(vid)
        if not has_rows[position]:
            raise ConfigError(f"{store}: video {vid!r} has no rows (no audio, or it failed), so no neighbours")
        query = units[position]
    # rows without features and the video itself come back too, and are dropped below
    found, cosines = nearest(units, query[None, :], k + 1 + int((~has_rows).sum()))
    rows = {}
    if manifest:
        rows = {row["id"]: row for row in read_prepared(manifest)}
    itself = ids.index(vid) if vid is not None else -1
    picked = [(int(i), float(c)) for i, c in zip(found[0], cosines[0], strict=True) if has_rows[i] and i != itself]
    picked = picked[:k]
    return [
        Neighbour(ids[i], c, rows.get(ids[i], {}).get("split", ""), rows.get(ids[i], {}).get(caption, ""))
        for i, c in picked
    ]


def embed_like(store: str | Path, video: str, backbones: dict, settings) -> np.ndarray:
    """A new video's unit row (mean row, L2-normalised), made with `store`'s recipe as `predict` makes a
    head's inputs; `backbones` (params.yaml's) name local weights where the recipe's were local."""
    import tempfile

    from extract.core.errors import UserError
    from extract.ondemand.remake import InputMaker
    from extract.stages.manifest import video_rows

    reader = StoreReader(store)
    recipe = reader.recipe
    if recipe.backbone is None:
        raise ConfigError(f"{store} is not a feature store (it has no backbone in its recipe): name data/features/*")
    rows = video_rows([video], None, Path.cwd())
    with tempfile.TemporaryDirectory(prefix="reelfeat-neighbours-") as tmp:
        maker = InputMaker(rows, Path(tmp), backbones, settings)
        maker.plan_views(recipe)
        maker.decode()
        made = StoreReader(maker.make(recipe))
        if made.attrs.get("config") != reader.attrs.get("config"):
            raise UserError(f"{video} was embedded with another recipe than {store}'s: its weights differ")
        failure = made.failures.get(rows[0]["id"])
        units, has_rows = unit_rows(made)
        if failure or not has_rows.any():
            raise UserError(f"{video}: {failure or 'no rows (no audio, or too short)'}")
        return units[0]
