"""Nothing damaged is read as data: bytes flipped inside a real shard, a damaged index and a damaged
checksum are one-line errors naming the shard and the fix in every command that reads the store;
`reelfeat verify` finds them and `--repair` lets a rerun recompute just their videos; NaN and Inf rows
are never stored, and a head refuses a store that has them anyway."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import assert_same_rows, save_torchvision, write_input
from xxhash import xxh3_64_intdigest

from extract.backbones import BackboneConfig, register_backbone
from extract.backbones.image import ImageBackbone
from extract.core.cli import EXIT_ERROR, EXIT_OK
from extract.core.settings import Settings
from extract.stages.features import run_features
from extract.store import StoreError, StoreReader, StoreWriter, store_info
from extract.store.shard import DamagedShard, Shard, named_by_content

VIDEOS = [f"v{i}" for i in range(8)]


class NanForOneBackbone(ImageBackbone):
    """ResNet18 whose output is NaN for the video whose frames are one flat grey (an overflow, say)."""

    def __init__(self, config: BackboneConfig, device: torch.device) -> None:
        super().__init__(dataclasses.replace(config, model="resnet18"), device)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        rows = super().embed(batch).clone()
        planes = batch.flatten(2)  # (B, channels, pixels)
        rows[(planes.amax(2) == planes.amin(2)).all(1)] = float("nan")
        return rows


register_backbone("nan_for_one", NanForOneBackbone, config_cls=BackboneConfig, about="test: NaN for a flat video")


@pytest.fixture(scope="module")
def made(tmp_path_factory, weights_dir) -> dict[str, Path]:
    """A frames store and the ResNet18 store the features stage makes of it, in small shards."""
    root = tmp_path_factory.mktemp("integrity")
    rng = np.random.default_rng(0)
    frames = {vid: rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for vid in VIDEOS}
    view = {"view": {"type": "frames", "num_frames": 3, "size": [32, 32]}}
    write_input(root / "frames", "frames", frames, config=view)
    config = {
        "input": str(root / "frames"),
        "weights": str(save_torchvision(weights_dir, "resnet18")),
        "dtype": "float32",
        "precision": "float32",
    }
    settings = Settings(shard_mb=0.01, loader_workers=0)  # two videos a shard: the store has four
    run_features("resnet18", config, root / "clean", settings=settings)
    return {"root": root, "config": config, "clean": root / "clean", "settings": settings}


def damaged_copy(made: dict, tmp_path: Path) -> tuple[Path, str, list[str]]:
    """A copy of the clean store with 64 bytes flipped inside one shard's rows, in its first video's (the
    file's size unchanged)."""
    store = tmp_path / "features" / "resnet18"
    shutil.copytree(made["clean"], store)
    name = sorted(StoreReader(store).shards)[1]
    with h5py.File(store / name, "r") as h5:
        rows = h5["feats"]
        middle = rows.id.get_offset() + rows.shape[1] * rows.dtype.itemsize // 2
        videos = list(h5["ids"].asstr()[:])
    with open(store / name, "r+b") as handle:
        handle.seek(middle)
        flipped = bytes(b ^ 0xFF for b in handle.read(64))
        handle.seek(middle)
        handle.write(flipped)
    return store, name, videos


def run(main, *args: str) -> int:
    return main(list(args))


def test_flipped_bytes_inside_a_shard_are_an_error_naming_it_in_every_reading_command(
    made, tmp_path, monkeypatch, capsys
):
    from heads.__main__ import main as heads_main
    from reelfeat.cli import main as reelfeat_main

    store, name, videos = damaged_copy(made, tmp_path)
    reader = StoreReader(store)  # the sizes are right: opening it cannot tell
    with pytest.raises(DamagedShard, match=rf"{name} is damaged \(rows of '{videos[0]}' fail their checksum\)"):
        reader.get(videos[0])
    other = next(vid for vid in VIDEOS if vid not in videos)
    assert reader.get(other)[0].shape == (3, 512)  # the other shards read as before

    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifest.csv").write_text(
        "id,video,split,label\n"
        + "".join(f"{v},{v}.mp4,{['train', 'val'][i % 2]},{i % 2}\n" for i, v in enumerate(VIDEOS))
    )
    head = {"task": "binary", "target": "label", "manifest": "manifest.csv", "epochs": 1, "bootstrap": 0}
    head["inputs"] = [{"store": str(store)}]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"heads": {"h": head}}))
    capsys.readouterr()
    commands = {
        "train": (heads_main, ["train", "h"]),
        "export-parquet": (reelfeat_main, ["export-parquet", str(store), "--out", "hf"]),
        "neighbours": (reelfeat_main, ["neighbours", str(store), VIDEOS[0]]),
    }
    for command, (main, args) in commands.items():
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == EXIT_ERROR and len(err) == 1, (command, err)
        assert err[0].startswith("error: ") and f"{name} is damaged" in err[0] and "dvc checkout" in err[0], command
    written = [p for folder in ("hf", "data") for p in (tmp_path / folder).rglob("*") if p.is_file()]
    assert written == []  # nothing half-made under a final name


def test_verify_names_each_damaged_shard_and_repair_lets_a_rerun_recompute_only_its_videos(made, tmp_path, capsys):
    from reelfeat.cli import main as reelfeat_main

    store, name, videos = damaged_copy(made, tmp_path)
    capsys.readouterr()
    assert run(reelfeat_main, "verify", str(made["clean"])) == EXIT_OK
    assert "4 shards whole (4 with checksums" in capsys.readouterr().out
    assert "verified on read: every row against its checksum" in store_info(made["clean"])
    assert run(reelfeat_main, "verify", str(store)) == EXIT_ERROR
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"{store / name}: damaged (its bytes no longer hash to its name); its 2 videos are lost"
    assert len(said) == 2 and "--repair" in said[1]

    assert run(reelfeat_main, "verify", "--repair", str(store)) == EXIT_OK
    assert "dropped 1 damaged shards (2 videos)" in capsys.readouterr().out
    assert not (store / name).exists() and sorted(StoreReader(store).ids) == sorted(set(VIDEOS) - set(videos))
    assert run(reelfeat_main, "verify", str(store)) == EXIT_OK

    summary = run_features("resnet18", made["config"], store, settings=made["settings"])
    assert (summary.computed, summary.reused) == (len(videos), len(VIDEOS) - len(videos))
    assert_same_rows(StoreReader(store), StoreReader(made["clean"]), rtol=1e-5, atol=1e-5)


def test_a_damaged_index_or_checksum_is_found_too(made, tmp_path, capsys):
    from reelfeat.cli import main as reelfeat_main

    store = tmp_path / "store"
    shutil.copytree(made["clean"], store)
    first, second = sorted(StoreReader(store).shards)[:2]
    videos = {}
    for name, dataset, byte in [(first, "row_xxh3", 8 + 5), (second, "video_xxh3", 1)]:
        with h5py.File(store / name, "r") as h5:  # a byte of the second row's, or of the first video's, hash
            at = h5[dataset].id.get_offset() + byte
            videos[name] = h5["ids"].asstr()[0]
        with open(store / name, "r+b") as handle:
            handle.seek(at)
            value = handle.read(1)
            handle.seek(at)
            handle.write(bytes([value[0] ^ 0x01]))
    reader = StoreReader(store)
    with pytest.raises(DamagedShard, match=f"rows of '{videos[first]}' fail their checksum"):
        reader.read(videos[first], np.array([1]))  # a head's sequence read: row by row
    with pytest.raises(DamagedShard, match=f"rows of '{videos[second]}' fail their checksum"):
        reader.get(videos[second])  # a whole video: one CRC
    for name in (first, second):
        with pytest.raises(DamagedShard, match="fail their checksum"):
            Shard(store / name).verify()
    capsys.readouterr()
    assert run(reelfeat_main, "verify", str(store)) == EXIT_ERROR
    assert len(capsys.readouterr().out.splitlines()) == 3  # the two shards, and what to do

    index = store / "index.json"
    text = index.read_bytes()
    index.write_bytes(text[: len(text) // 2] + b"\x00" * 16 + text[len(text) // 2 + 16 :])
    capsys.readouterr()
    assert run(reelfeat_main, "verify", str(store)) == EXIT_ERROR
    assert (
        capsys.readouterr().err.strip()
        == f"error: {index} is not a store index (damaged?): rerun the stage that writes it"
    )


def test_a_shard_written_before_checksums_is_verified_by_its_name(made, tmp_path):
    shard = tmp_path / "old.h5"
    shutil.copy(made["clean"] / sorted(StoreReader(made["clean"]).shards)[0], shard)
    with h5py.File(shard, "r+") as h5:  # as shards were written before they carried checksums
        for name in ("row_xxh3", "times_xxh3"):
            del h5[name]
        del h5.attrs["meta_xxh3"]
    import hashlib

    named = tmp_path / f"shard-{hashlib.sha256(shard.read_bytes()).hexdigest()[:32]}.h5"
    shard.rename(named)
    assert named_by_content(named) and not Shard(named).checksummed
    with h5py.File(named, "r") as h5:
        middle = h5["feats"].id.get_offset() + 100
    with open(named, "r+b") as handle:
        handle.seek(middle)
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(DamagedShard, match="its bytes no longer hash to its name"):
        Shard(named)


def test_nan_rows_fail_their_video_and_are_never_stored(made, tmp_path):
    frames = {vid: rows for vid, rows in zip(VIDEOS[:3], [np.full((3, 32, 32, 3), 90, np.uint8)] * 3, strict=True)}
    frames["v0"] = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    view = {"view": {"type": "frames", "num_frames": 3, "size": [32, 32]}}
    write_input(tmp_path / "frames", "frames", frames, config=view)
    config = {**made["config"], "input": str(tmp_path / "frames")}
    summary = run_features("nan_for_one", config, tmp_path / "f", settings=made["settings"])
    assert summary.computed == 1 and set(summary.failures) == {"v1", "v2"}
    assert summary.failures["v1"].startswith("forward pass: the model returned NaN or infinite values")
    assert StoreReader(tmp_path / "f").ids == ["v0"]

    with pytest.raises(StoreError, match="'bad': its rows hold NaN or Inf, which a store never keeps"):
        with StoreWriter(tmp_path / "w", row_shape=(2,), dtype=np.float32, attrs={"config": "x"}) as writer:
            writer.add("bad", np.array([[1.0, np.nan]], np.float32), np.zeros(1, np.float32))


def test_a_head_refuses_a_store_that_holds_nan_rows_naming_the_video(made, tmp_path):
    from extract.core.errors import UserError
    from heads.config import head_config
    from heads.data import HeadData

    store = tmp_path / "old"
    shutil.copytree(made["clean"], store)
    name = sorted(StoreReader(store).shards)[0]
    with h5py.File(store / name, "r+") as h5:  # as a store written before NaN was refused could hold them
        rows = h5["feats"][:2]
        rows[:] = np.nan
        h5["feats"][:2] = rows
        from extract.store.shard import row_hashes

        h5["row_xxh3"][:2] = row_hashes(rows)
        first = h5["feats"][: h5["offsets"][1]]
        h5["video_xxh3"][0] = xxh3_64_intdigest(first)  # its checksums made whole again: only the NaN is wrong
        video = h5["ids"].asstr()[0]
    for pool in ("mean", "lstm"):
        config = head_config(
            "h", {"task": "binary", "target": "label", "inputs": [{"store": str(store), "pool": pool}]}
        )
        rows = [{"id": vid, "split": "train", "label": "1"} for vid in VIDEOS]
        with pytest.raises(UserError, match=f"the rows of '{video}' hold NaN or Inf"):
            data = HeadData.load(config, rows)
            data.batch(np.arange(len(data.rows)))
