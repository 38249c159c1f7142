"""A store as NumPy files per video, the layout video_features writes, and back.

    <folder>/<id>_<feature_type>.npy    (T, D) float32, the video's rows
    <folder>/<id>_timestamps_ms.npy     (T,) float64, each row's time in milliseconds

video_features (v-iashin/video_features, `on_extraction: save_numpy`) names a video's files by its
file stem and the feature type (`resnet`, `vggish`, `r21d`, ...), so its output folders import as
stores and exported stores read as its output. An id with folders (`clips/a`) keeps them
(`clips/a_resnet50.npy`). Export writes float32, as video_features does; float16 rows convert
exactly, so export then import gives the same values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from extract.core.errors import UserError
from extract.core.files import atomic_write, inside
from extract.interop import Imported
from extract.store import StoreReader, StoreWriter

TIMESTAMPS = "timestamps_ms"


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _load(path: Path) -> np.ndarray:
    """A .npy file's array; object arrays (pickles) are refused, never loaded."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a NumPy array of numbers ({exc}); remove it or write it with np.save") from None


def export_numpy(store: str | Path, out: str | Path, feature_type: str | None = None) -> int:
    """Write every video of the store as `<id>_<feature_type>.npy` and `<id>_timestamps_ms.npy`
    (feature_type defaults to the store folder's name); returns the number of videos."""
    reader = StoreReader(store)
    if len(reader.row_shape) != 1:
        raise UserError(
            f"{store} holds rows of shape {reader.row_shape}, not feature vectors: export data/features/<name>"
        )
    feature_type = feature_type or reader.path.name
    out = Path(out)
    for vid in reader.ids:
        rows, timestamps = reader.get(vid)
        _save(inside(out, f"{vid}_{feature_type}.npy"), rows.astype(np.float32))
        _save(inside(out, f"{vid}_{TIMESTAMPS}.npy"), timestamps.astype(np.float64) * 1000.0)
    return len(reader)


def import_numpy(folder: str | Path, feature_type: str, out: str | Path, dtype: str | None = None) -> Imported:
    """A store from `<id>_<feature_type>.npy` files (and their `<id>_timestamps_ms.npy` where present;
    otherwise row i is at i seconds); dtype defaults to the files'."""
    folder = Path(folder)
    suffix = f"_{feature_type}.npy"
    files = sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())
    if not files:
        raise UserError(f"{folder}: no *{suffix} files; name the feature type the files carry (--feature-type)")
    first = _load(files[0])
    if first.ndim != 2:
        raise UserError(f"{files[0]}: an array of shape {first.shape}; each file holds (rows, width) features")
    dtype = np.dtype(dtype or first.dtype)
    # its recipe: another tool made these rows, and nothing more is known of how
    attrs = {"kind": "features", "backbone": feature_type, "config": json.dumps({"numpy_files": feature_type})}
    with StoreWriter(out, row_shape=first.shape[1:], dtype=dtype, attrs=attrs) as writer:
        for path in files:
            vid = path.relative_to(folder).as_posix()[: -len(suffix)]
            rows = _load(path)
            if rows.ndim != 2 or rows.shape[1:] != first.shape[1:]:
                raise UserError(
                    f"{path}: rows of shape {rows.shape}, but {files[0].name} has (T, {first.shape[1]}): "
                    "one store holds one feature type of one width"
                )
            stamps = path.with_name(f"{path.name[: -len(suffix)]}_{TIMESTAMPS}.npy")
            if stamps.is_file():
                seconds = _load(stamps).astype(np.float32) / 1000.0
            else:
                seconds = np.arange(len(rows), dtype=np.float32)
            if len(seconds) != len(rows):
                raise UserError(f"{stamps}: {len(seconds)} timestamps for {len(rows)} rows in {path.name}")
            writer.add(vid, rows.astype(dtype), seconds)
    return Imported({Path(out).name: Path(out)}, len(files))
