"""The DVC workflow end to end, as users live in it: repro, heads-only experiments, sharing through a
remote, and incremental growth. A throwaway git + DVC project made from this repository, six
generated clips, tiny random weights."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import ROOT, make_video


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def git(cwd: Path, *args: str) -> str:
    return sh(cwd, "git", "-c", "user.name=t", "-c", "user.email=t@t", *args)


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
    for name in ["extract", "heads", "reelfeat", "dvc.yaml", "params.yaml"]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    (repo / "data" / "clips").mkdir(parents=True)
    (repo / "data" / "clips" / "manifest.csv").write_text("video,split,risky\n")
    for i in range(6):
        add_clip(repo, i)
    weights = root / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"] = {"manifest": "data/clips/manifest.csv", "videos": "data/clips", "columns": {"risky": "binary"}}
    params["decode"] = {"views": {"frames": {"type": "frames", "num_frames": 2, "size": [32, 32]}}}
    params["backbones"] = {"resnet18": {"input": "data/decoded/frames", "weights": str(weights)}}
    params["encoders"] = {}  # no learned encoder: its stages drop out of the pipeline
    params["heads"] = {
        "risky": {
            "task": "binary",
            "target": "risky",
            "lr": 0.001,  # `dvc exp run -S` overrides keys that params.yaml has
            "epochs": 2,
            "bootstrap": 10,
            "inputs": [{"store": "data/features/resnet18"}],
        }
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data/*\n!/data/clips/\n")
    git(repo, "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "project")
    return repo


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_the_workflow(project, tmp_path):
    # 1. the whole pipeline, then nothing the second time
    first = sh(project, "dvc", "repro")
    assert ran(first) == {"prepare", "decode", "extract@resnet18", "train@risky", "evaluate@risky", "report"}
    assert (project / "data" / "report" / "index.html").is_file()
    assert ran(sh(project, "dvc", "repro")) == set()
    git(project, "add", "-A")
    git(project, "commit", "-qm", "repro")

    # 2. a heads-only experiment reruns the head's stages only (and the report, which shows the head)
    experiment = sh(project, "dvc", "exp", "run", "-S", "heads.risky.lr=0.01")
    assert ran(experiment) == {"train@risky", "evaluate@risky", "report"}
    for stage in ["prepare", "decode", "extract@resnet18"]:
        assert f"Stage '{stage}' didn't change, skipping" in experiment
    assert "0.01" in sh(project, "dvc", "exp", "show", "--csv")  # the experiment is listed with its lr
    git(project, "add", "-A")
    git(project, "commit", "-qm", "experiment")

    # 3. sharing: push to a remote, clone, pull, and nothing is decoded or extracted again
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

    # 4. growing: two new clips are the only ones decoded and extracted, the head retrains, and the
    # DVC cache gains shards holding the new clips only; a collaborator's pull fetches just those
    before = cached(project)
    add_clip(project, 6)
    add_clip(project, 7)
    grown = sh(project, "dvc", "repro")
    assert ran(grown) == {"prepare", "decode", "extract@resnet18", "train@risky", "evaluate@risky", "report"}
    assert "frames: data/decoded/frames written: 2 decoded, 6 reused, 0 failed" in grown
    assert "resnet18: data/features/resnet18 written: 2 extracted, 6 reused, 0 failed" in grown
    new = {name: data for name, data in cached(project).items() if name not in before}
    new_shards = [shard_ids(data) for data in new.values() if data.startswith(HDF5)]
    assert sorted(new_shards) == [["clip6", "clip7"]] * 2  # one shard per store, the new clips
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
    assert sorted(shard_ids(data) for data in fetched.values() if data.startswith(HDF5)) == sorted(new_shards)
    assert set(fetched) <= set(new)  # nothing the collaborator had already came again
    assert ran(sh(clone, "dvc", "repro")) == set()


HDF5 = b"\x89HDF"


def cached(repo: Path) -> dict[str, bytes]:
    """Every object in a project's DVC cache, by its path under .dvc/cache."""
    cache = repo / ".dvc" / "cache"
    return {str(p.relative_to(cache)): p.read_bytes() for p in cache.rglob("*") if p.is_file()}


def shard_ids(data: bytes) -> list[str]:
    import io

    import h5py

    with h5py.File(io.BytesIO(data)) as shard:
        return sorted(shard["ids"].asstr()[:])
