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
    split = ["train", "train", "train", "val", "test", "train", "val"][index]
    with open(repo / "data" / "clips" / "manifest.csv", "a", newline="") as handle:
        csv.writer(handle).writerow([name, split, index % 2])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workflow")
    repo = root / "repo"
    repo.mkdir()
    for name in ["extract", "heads", "dvc.yaml", "params.yaml"]:
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
    assert ran(first) == {"prepare", "decode", "extract@resnet18", "train@risky", "evaluate@risky"}
    assert ran(sh(project, "dvc", "repro")) == set()
    git(project, "add", "-A")
    git(project, "commit", "-qm", "repro")

    # 2. a heads-only experiment reruns the head's stages only
    experiment = sh(project, "dvc", "exp", "run", "-S", "heads.risky.lr=0.01")
    assert ran(experiment) == {"train@risky", "evaluate@risky"}
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

    # 4. incremental: a new clip is the only one decoded and extracted; the head retrains
    add_clip(project, 6)
    grown = sh(project, "dvc", "repro")
    assert ran(grown) == {"prepare", "decode", "extract@resnet18", "train@risky", "evaluate@risky"}
    assert "frames: data/decoded/frames written: 1 decoded, 6 reused, 0 failed" in grown
    assert "resnet18: data/features/resnet18 written: 1 extracted, 6 reused, 0 failed" in grown
    info = sh(project, "python", "-m", "extract", "info", "data/features/resnet18")
    assert "videos: 7" in info and "backbone: resnet18" in info
