"""The index of a store: its live videos in manifest order and where each one's rows are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from extract.store.layout import SCHEMA_VERSION, Layout, StoreError

INDEX = "index.json"


@dataclass
class Entry:
    """Where one live video's rows are."""

    vid: str
    sha: str
    shard: str
    position: int
    rows: int


@dataclass
class Index:
    attrs: dict
    layout: Layout
    shards: dict[str, dict]  # name -> {"bytes", "videos", "rows"}: what the shard file holds
    entries: list[Entry]
    failures: dict[str, str]

    def dumps(self) -> str:
        names = sorted(self.shards)
        number = {name: i for i, name in enumerate(names)}
        body = {
            "schema_version": SCHEMA_VERSION,
            "attrs": self.attrs,
            "layout": asdict(self.layout),
            "shards": [{"name": name, **self.shards[name]} for name in names],
            "videos": {
                "id": [e.vid for e in self.entries],
                "sha256": [e.sha for e in self.entries],
                "shard": [number[e.shard] for e in self.entries],
                "position": [e.position for e in self.entries],
                "rows": [e.rows for e in self.entries],
            },
            "failures": self.failures,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def load(cls, folder: Path) -> Index:
        path = folder / INDEX
        if not path.is_file():
            if (folder.with_suffix(".h5")).is_file() or folder.suffix == ".h5":
                raise StoreError(
                    f"{folder} is a single-file store from before reelfeat kept shards: rerun the stage that "
                    "writes it (dvc repro) to rebuild it as a folder, then delete the .h5 file"
                )
            raise StoreError(f"no store at {folder}: run the stage that writes it (dvc repro)")
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise StoreError(f"{path} is not a store index (damaged?): rerun the stage that writes it") from None
        if body.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{folder} has store schema {body.get('schema_version')}, this reelfeat reads {SCHEMA_VERSION}: "
                "delete it and rerun the stage that writes it"
            )
        names = [shard["name"] for shard in body["shards"]]
        videos = body["videos"]
        entries = [
            Entry(vid, sha, names[shard], position, rows)
            for vid, sha, shard, position, rows in zip(
                videos["id"], videos["sha256"], videos["shard"], videos["position"], videos["rows"], strict=True
            )
        ]
        shards = {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in body["shards"]}
        return cls(body["attrs"], Layout.of(body["layout"]), shards, entries, body["failures"])


def digest(folder: Path) -> str:
    """sha256 of a store's index: which videos it holds, in which shards (named by their content), made
    how. It changes exactly when the store's rows or recipe do, so a stage can depend on it."""
    path = Path(folder) / INDEX
    if not path.is_file():
        Index.load(Path(folder))  # raises the error that names the stage to run
    return hashlib.sha256(path.read_bytes()).hexdigest()
