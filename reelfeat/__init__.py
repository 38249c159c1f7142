"""reelfeat's Python API, for notebooks and for people who train their own heads.

    import reelfeat

    store = reelfeat.open_store("data/features/resnet50")   # a StoreReader
    store.ids, len(store), store.row_shape, store.recipe, store.failures
    rows, seconds = store.get(store.ids[0])                 # one video: (T, D) rows, (T,) times
    for vid, rows in store.iter_rows(): ...                 # every video, a shard at a time

    manifest = reelfeat.read_manifest("data/prepared/manifest.csv")   # rows as dicts: id, split, labels
    data = reelfeat.FeatureDataset({"image": "data/features/resnet50", "audio": "data/features/vggish"},
                                   manifest="data/prepared/manifest.csv", split="train", pool="mean")
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, collate_fn=data.collate)

    reelfeat.export_numpy("data/features/resnet50", "npy/")            # video_features' layout
    reelfeat.import_numpy("npy/", "resnet50", "data/features/resnet50_copy")

Names are imported when first used, so `import reelfeat` (and the `reelfeat` command) does not
load torch until a Dataset is asked for.
"""

from __future__ import annotations

from importlib import import_module

_API = {
    "open_store": ("extract.store", "StoreReader"),
    "StoreReader": ("extract.store", "StoreReader"),
    "read_manifest": ("extract.stages.manifest", "read_prepared"),
    "FeatureDataset": ("heads.dataset", "FeatureDataset"),
    "export_numpy": ("extract.interop.numpy_files", "export_numpy"),
    "import_numpy": ("extract.interop.numpy_files", "import_numpy"),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> object:
    if name not in _API:
        raise AttributeError(f"module 'reelfeat' has no attribute {name!r}; the API is {__all__}")
    module, attribute = _API[name]
    return getattr(import_module(module), attribute)


def __dir__() -> list[str]:
    return __all__
