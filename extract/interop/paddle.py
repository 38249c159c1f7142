"""PaddleVideo MultimodalVideoTag feature files <-> reelfeat stores.

Their layout: a folder of `<name>.pkl`, one per video, each `{"video": name, "feature":
{"image_pkl": (T, 2048), "audio_pkl": (T, 128)}}`; split files `url<TAB>title<TAB>label1,label2`
(the pickle of `url` is its file name without extension); a class file, one label per line
(optionally `label<TAB>index`).

Pickles can run code when loaded. They are read only with an explicit `trust_pickle`, and then
through an unpickler that accepts numpy arrays, dicts, lists, strings, bytes and numbers only.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path

import numpy as np

from extract.core.errors import UserError
from extract.core.files import atomic_write, write_text
from extract.interop import Imported
from extract.stages.manifest import read_table, write_csv
from extract.store import StoreReader, StoreWriter

SPLITS = ("train", "val", "test")
KINDS = {"image_pkl": "paddle_image", "audio_pkl": "paddle_audio"}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles rebuild array bytes from latin-1 text with it: data only
}
# plain-data builtins, under Python 3's module name and Python 2's (these files come from Python 2)
_BUILTINS = {
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "bytes",
    "bytearray",
    "str",
    "int",
    "float",
    "complex",
    "bool",
}


class PickleRefused(UserError):
    """A pickle that is not to be loaded: untrusted, or holding something other than plain data."""


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        plain_builtin = module in ("builtins", "__builtin__") and name in _BUILTINS
        if plain_builtin or (module, name) in _ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise PickleRefused(
            f"it refers to {module}.{name}; only numpy arrays, dicts, lists, strings, bytes and numbers are loaded"
        )


def load_plain_pickle(path: Path) -> object:
    """Unpickle plain data only (PaddleVideo wrote these with Python 2: latin-1 for its byte strings)."""
    try:
        return _PlainDataUnpickler(io.BytesIO(path.read_bytes()), encoding="iso-8859-1").load()
    except PickleRefused as exc:
        raise PickleRefused(f"{path}: refused: {exc}") from None


def import_paddle(
    features: Path, splits: dict[str, Path], classes: Path | None, out: Path, trust_pickle: bool
) -> Imported:
    """Write the stores `paddle_image`, `paddle_audio` and `manifest.csv` (id, video, text, labels, split) into out."""
    if not trust_pickle:
        raise PickleRefused(
            f"{features} holds pickles, which can run code when loaded: pass --trust-pickle if "
            "you trust their source (they are then read as plain data only)"
        )
    known = (
        {line.split("\t")[0].strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()}
        if classes
        else None
    )
    rows = []
    for split, path in splits.items():
        for row in read_table(path):  # a .txt is read as a PaddleVideo split file
            values = row.values
            labels = [name for name in values["labels"].split(",") if name and (known is None or name in known)]
            name = Path(values["video"].split("/")[-1]).stem
            rows.append(
                {
                    "id": name,
                    "video": values["video"],
                    "text": values["text"],
                    "labels": ",".join(labels),
                    "split": split,
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    writers = {
        key: StoreWriter(
            out / store,
            row_shape=(dim,),
            dtype=np.float32,
            attrs={
                "kind": "features",
                "backbone": store,
                "config": json.dumps({"paddle": key}),  # its recipe: PaddleVideo made these rows, not reelfeat
            },
        )
        for (key, store), dim in zip(KINDS.items(), (2048, 128), strict=True)
    }
    try:
        for row in rows:
            path = features / f"{row['id']}.pkl"
            if not path.is_file():
                for writer in writers.values():
                    writer.add_failure(row["id"], f"no feature file {path}")
                continue
            record = load_plain_pickle(path)
            for key, writer in writers.items():
                feats = np.asarray(record["feature"][key], np.float32).reshape(-1, 128 if key == "audio_pkl" else 2048)
                writer.add(row["id"], feats, np.arange(len(feats), dtype=np.float32), "")
        written = {KINDS[key]: writer.commit() for key, writer in writers.items()}
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    manifest = write_csv(out / "manifest.csv", ["id", "video", "text", "labels", "split"], rows)
    return Imported(written, len(rows), manifest)


def export_paddle(image: Path, audio: Path, manifest: Path, labels: str, out: Path) -> int:
    """Write PaddleVideo's layout: feature_files/<name>.pkl, <split>.txt and class.txt; returns videos written."""
    image_store, audio_store = StoreReader(image), StoreReader(audio)
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["id"] in image_store and row["id"] in audio_store]
    names: dict[str, str] = {}
    for row in rows:
        name = Path(row["video"]).stem
        if name in names:
            raise UserError(
                f"{row['id']} and {names[name]} would both be {name}.pkl: PaddleVideo names feature "
                "files by the video's file name, so those must be unique"
            )
        names[name] = row["id"]
    folder = out / "feature_files"
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        record = {
            "video": Path(row["video"]).name,
            "feature": {
                "image_pkl": image_store.get(row["id"])[0].astype(np.float32),
                "audio_pkl": audio_store.get(row["id"])[0].astype(np.float32),
            },
        }
        with atomic_write(folder / f"{Path(row['video']).stem}.pkl", "wb") as handle:
            pickle.dump(record, handle, protocol=2)
    classes = sorted({name for row in rows for name in row.get(labels, "").split(",") if name})
    write_text(out / "class.txt", "".join(f"{name}\n" for name in classes))
    for split in SPLITS:
        lines = [
            f"{Path(r['video']).name}\t{r.get('text', '')}\t{r.get(labels, '')}\n"
            for r in rows
            if r.get("split") == split
        ]
        write_text(out / f"{split}.txt", "".join(lines))
    return len(rows)
