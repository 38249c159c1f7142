"""The DVC workflow end to end, as users live in it, in one throwaway git + DVC project made from this
repository: repro, a decode param, a backbone param, a heads-only experiment, a learned encoder,
sharing through a remote, and incremental growth. Each step goes on from the one before, so the
pipeline is built once. Eight generated clips (six at first), tiny random weights. The first repro also
records which project files each stage's process loads, against the deps `dvc.yaml` gives it."""

from __future__ import annotations

import ast
import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import ROOT, git, make_video, ran, sh

from extract.store import StoreReader

HEAD_STAGES = {"train@risky", "evaluate@risky", "report"}  # a head's stages, and the report that shows it
MOTION_STAGES = {"train@motion", "evaluate@motion", "report"}  # a head on the learned encoder's store
STORES = {"stores@risky", "stores@motion"}  # rerun whenever a store changes; cheap, and no model
ENCODER_STAGES = {"train-encoder@convlstm_ae", "encode@convlstm_ae"}
INSIGHT = "insight@resnet18"  # duplicates in the resnet18 store: reruns with it
ALL_STAGES = {"prepare", "decode", "extract@resnet18", INSIGHT, *ENCODER_STAGES, *STORES, *HEAD_STAGES, *MOTION_STAGES}
CODE = ("extract", "heads", "reelfeat")  # the project's code, whose files a stage lists

# Loaded by a stage's process (REELFEAT_WORKERS=0: every module loads in it), written at its exit.
RECORDER = """
import atexit, json, os, sys
def _record():
    root = os.environ["DVC_ROOT"] + os.sep
    paths = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
    files = {path[len(root):] for path in paths if path.startswith(root)}
    with open(os.path.join(os.environ["LOADED_DIR"], os.environ["DVC_STAGE"] + ".json"), "w") as out:
        json.dump(sorted(files), out)
if os.environ.get("DVC_STAGE"):
    atexit.register(_record)
"""


def add_clip(repo: Path, index: int) -> None:
    name = f"clip{index}.mp4"
    make_video(repo / "data" / "clips" / name, seconds=1, size="48x32", rate=10)
    split = ["train", "train", "train", "val", "test", "train", "val", "test"][index]
    with open(repo / "data" / "clips" / "manifest.csv", "a", newline="") as handle:
        csv.writer(handle).writerow([name, split, index % 2])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workflow")
    repo = root / "repo"
    repo.mkdir()
    for name in ["extract", "heads", "reelfeat"]:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["dvc.yaml", "params.yaml", ".dvcignore"]:
        shutil.copy(ROOT / name, repo / name)
    (repo / "data" / "clips").mkdir(parents=True)
    (repo / "data" / "clips" / "manifest.csv").write_text("video,split,risky\n")
    for i in range(6):
        add_clip(repo, i)
    weights = root / "resnet18.pth"  # tiny random weights, loaded through the production loader
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"] = {"manifest": "data/clips/manifest.csv", "videos": "data/clips", "columns": {"risky": "binary"}}
    params["decode"] = {
        "views": {
            "frames": {"type": "frames", "num_frames": 2, "size": [32, 32]},
            "frames_small": {"type": "frames", "num_frames": 4, "size": [16, 16]},
            "audio": {"type": "audio", "sample_rate": 16000, "max_seconds": None},
        }
    }
    params["backbones"] = {"resnet18": {"input": "data/decoded/frames", "weights": str(weights)}}
    params["insight"] = {"resnet18": {"store": "data/features/resnet18"}}
    small = {"size": [16, 16], "channels": [4, 8], "hidden": [8], "epochs": 2, "input": "data/decoded/frames_small"}
    params["encoders"] = {"convlstm_ae": small}
    params["heads"] = {
        "risky": {
            "task": "binary",
            "target": "risky",
            "lr": 0.001,  # `dvc exp run -S` overrides keys that params.yaml has
            "epochs": 2,
            "bootstrap": 10,
            "inputs": [{"store": "data/features/resnet18"}],
        },
        "motion": {
            "task": "binary",
            "target": "risky",
            "epochs": 2,
            "bootstrap": 10,
            "inputs": [{"store": "data/features/convlstm_ae"}],
        },
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data/*\n!/data/clips/\n")
    git(repo, "init", "-q")
    sh(repo, "dvc", "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "project")
    return repo


def set_param(repo: Path, section: str, path: list[str], value: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params[section]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def unchanged(output: str, *stages: str) -> bool:
    return all(f"Stage '{stage}' didn't change" in output for stage in stages)


def test_the_workflow(project, tmp_path):
    # 1. the whole pipeline, then nothing the second time
    loaded = tmp_path / "loaded"
    loaded.mkdir()
    (loaded / "sitecustomize.py").write_text(RECORDER)
    recording = {"PYTHONPATH": str(loaded), "LOADED_DIR": str(loaded), "REELFEAT_WORKERS": "0"}
    first = sh(project, "dvc", "repro", env={**recording, "REELFEAT_LOADER_WORKERS": "0"})
    assert ran(first) == ALL_STAGES
    assert_deps_cover_what_stages_load(project, loaded)
    assert (project / "data" / "report" / "index.html").is_file()
    frames = StoreReader(project / "data/decoded/frames")
    assert len(frames) == 6 and frames.row_shape == (32, 32, 3)
    assert StoreReader(project / "data/features/resnet18").row_shape == (512,)
    encoder = project / "data/encoders/convlstm_ae"
    assert (encoder / "model.pt").is_file() and len(list((encoder / "strips").glob("*.png"))) == 1  # one val video
    assert len(yaml.safe_load((encoder / "history.json").read_text())) == 2
    assert StoreReader(project / "data/features/convlstm_ae").row_shape == (8,)
    second = sh(project, "dvc", "repro")
    assert ran(second) == set() and "Data and pipelines are up to date" in second

    # 2. each param reruns only its stages: a view redoes its own store only, and what reads it
    set_param(project, "decode", ["views", "audio", "max_seconds"], 0.5)
    audio_only = sh(project, "dvc", "repro")
    assert ran(audio_only) == {"decode", "report"}  # the report lists the decoded stores
    assert "audio: data/decoded/audio written: 6 decoded, 0 reused" in audio_only
    assert "frames: data/decoded/frames unchanged: 0 decoded, 6 reused" in audio_only
    assert unchanged(audio_only, "prepare", "extract@resnet18", *ENCODER_STAGES)

    set_param(project, "decode", ["views", "frames", "num_frames"], 3)
    frames_changed = sh(project, "dvc", "repro")
    assert ran(frames_changed) == {"decode", "extract@resnet18", INSIGHT, *STORES, *HEAD_STAGES}
    assert "frames: data/decoded/frames written: 6 decoded, 0 reused" in frames_changed
    assert StoreReader(project / "data/features/resnet18").num_rows == 18

    set_param(project, "backbones", ["resnet18", "dtype"], "float32")
    backbone_only = sh(project, "dvc", "repro")
    assert ran(backbone_only) == {"extract@resnet18", INSIGHT, *STORES, *HEAD_STAGES}  # not the motion head's
    git(project, "add", "-A")
    git(project, "commit", "-qm", "repro")

    # 3. a heads-only experiment reruns the head's stages only
    experiment = sh(project, "dvc", "exp", "run", "-S", "heads.risky.lr=0.01")
    assert ran(experiment) == HEAD_STAGES
    assert all(f"Stage '{stage}' didn't change, skipping" in experiment for stage in ALL_STAGES - HEAD_STAGES)
    assert "0.01" in sh(project, "dvc", "exp", "show", "--csv")  # the experiment is listed with its lr
    metrics = sh(project, "dvc", "metrics", "show")
    assert "data/heads/risky/metrics.json" in metrics and "test.accuracy" in metrics

    # 4. a head on the learned encoder: retraining the encoder re-embeds and retrains that head only
    set_param(project, "encoders", ["convlstm_ae", "epochs"], 3)
    retrained = sh(project, "dvc", "repro")
    assert ran(retrained) == {*ENCODER_STAGES, *STORES, *MOTION_STAGES}
    assert len(yaml.safe_load((encoder / "history.json").read_text())) == 3
    git(project, "add", "-A")
    git(project, "commit", "-qm", "experiment")

    # 5. sharing: push to a remote, clone, pull, and nothing is decoded or extracted again
    sh(project, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "remote")
    sh(project, "dvc", "push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    sh(clone, "dvc", "pull")
    assert (clone / "data" / "features" / "resnet18" / "index.json").is_file()
    assert ran(sh(clone, "dvc", "repro")) == set()
    assert "test.accuracy" in sh(clone, "dvc", "metrics", "show")

    # 6. growing: two new clips are the only ones decoded and extracted, and the DVC cache gains
    # shards holding the new clips only; a collaborator's pull fetches just those
    before = cached(project)
    add_clip(project, 6)
    add_clip(project, 7)
    grown = sh(project, "dvc", "repro")
    assert ran(grown) == ALL_STAGES  # the encoder learns from the new clips too
    assert "frames: data/decoded/frames written: 2 decoded, 6 reused, 0 failed" in grown
    assert "resnet18: data/features/resnet18 written: 2 extracted, 6 reused, 0 failed" in grown
    new = {name: data for name, data in cached(project).items() if name not in before}
    new_shards = sorted(shard_ids(data) for data in new.values() if data.startswith(HDF5))
    everyone = [f"clip{i}" for i in range(8)]  # the retrained encoder embeds every clip again
    assert new_shards == [everyone] + [["clip6", "clip7"]] * 4  # frames, frames_small, audio, resnet18
    old_shards = sum(len(data) for data in before.values() if data.startswith(HDF5))
    assert sum(len(data) for data in new.values() if data.startswith(HDF5)) < old_shards  # 2 clips' rows, not 8
    info = sh(project, "python", "-m", "extract", "info", "data/features/resnet18")
    assert "videos: 8" in info and "backbone: resnet18" in info and "shards: 2" in info

    git(project, "add", "-A")
    git(project, "commit", "-qm", "two more clips")
    sh(project, "dvc", "push")
    pulled_before = cached(clone)
    git(clone, "pull", "-q")
    sh(clone, "dvc", "pull")
    fetched = {name: data for name, data in cached(clone).items() if name not in pulled_before}
    assert sorted(shard_ids(data) for data in fetched.values() if data.startswith(HDF5)) == new_shards
    assert set(fetched) <= set(new)  # nothing the collaborator had already came again
    assert ran(sh(clone, "dvc", "repro")) == set()


def assert_deps_cover_what_stages_load(project: Path, loaded: Path) -> None:
    """Each stage's code deps in dvc.lock are exactly the project files its process loaded: each loaded
    file is listed, itself or by its folder (a change to it reruns the stage), and each listed file or
    folder's every file was loaded (a change elsewhere does not). Package files that hold only a
    docstring are left out: nothing in them can change what a stage makes."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    for stage, entry in stages.items():
        files = json.loads((loaded / f"{stage}.json").read_text())
        files = {file for file in files if not docstring_only(project / file)}
        listed = set()
        for dep in (dep["path"] for dep in entry.get("deps", []) if dep["path"].split("/")[0] in CODE):
            path = project / dep  # a folder stands for every file under it, as DVC hashes it
            named = [p for p in sorted(path.rglob("*.py")) if not docstring_only(p)] if path.is_dir() else [path]
            listed |= {str(p.relative_to(project)) for p in named}
        assert files <= listed, f"{stage} loads {sorted(files - listed)}: list them in its deps in dvc.yaml"
        assert listed <= files, f"{stage} lists {sorted(listed - files)} in its deps but never loads them"


def docstring_only(path: Path) -> bool:
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in ast.parse(path.read_text()).body
    )


HDF5 = b"\x89HDF"


def cached(repo: Path) -> dict[str, bytes]:
    """Every object in a project's DVC cache, by its path under .dvc/cache."""
    cache = repo / ".dvc" / "cache"
    return {str(p.relative_to(cache)): p.read_bytes() for p in cache.rglob("*") if p.is_file()}


def shard_ids(data: bytes) -> list[str]:
    import h5py

    with h5py.File(io.BytesIO(data)) as shard:
        return sorted(shard["ids"].asstr()[:])
