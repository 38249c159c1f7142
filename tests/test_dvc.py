"""The real DVC pipeline in a throwaway git repository made from this one, on four demo clips."""

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
from conftest import ROOT

from extract.store import StoreReader


def sh(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "REELFEAT_WORKERS": "2",
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ["extract", "heads", "reelfeat", "dvc.yaml", "params.yaml"]:
        src = ROOT / name
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(src, repo / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    with open(ROOT / "data/demo/manifest.csv", newline="", encoding="utf-8") as handle:
        first_four = list(csv.DictReader(handle))[:4]
    rows = [dict(row, split=split) for row, split in zip(first_four, ["train", "train", "val", "test"], strict=True)]
    demo = repo / "data" / "demo"
    (demo / "clips").mkdir(parents=True)
    for row in rows:
        shutil.copy(ROOT / "data/demo" / row["video"], demo / row["video"])
    with open(demo / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    weights = tmp_path / "resnet18.pth"  # tiny random weights, loaded through the production loader
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["backbones"] = {"resnet18": {"input": "data/decoded/frames", "weights": str(weights)}}
    params["heads"] = {
        "risky": {
            "task": "binary",
            "target": "risky",
            "epochs": 2,
            "bootstrap": 10,
            "inputs": [{"store": "data/features/resnet18", "pool": "mean"}],
        }
    }
    small = {"size": [16, 16], "channels": [4, 8], "hidden": [8], "epochs": 2, "input": "data/decoded/frames_small"}
    params["encoders"] = {"convlstm_ae": small}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data/*\n!/data/demo/\n")
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return repo


def set_param(repo: Path, section: str, path: list[str], value: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params[section]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_twice_does_nothing_and_each_param_reruns_only_its_stages(project):
    first = sh(project, "dvc", "repro")
    for stage in ["prepare", "decode", "extract@resnet18"]:
        assert f"Running stage '{stage}'" in first
    frames = StoreReader(project / "data/decoded/frames")
    assert len(frames) == 4 and frames.row_shape == (224, 224, 3)
    assert StoreReader(project / "data/features/resnet18").row_shape == (512,)

    assert "Running stage 'report'" in first

    second = sh(project, "dvc", "repro")
    assert "Running stage" not in second and "Data and pipelines are up to date" in second

    set_param(project, "decode", ["views", "audio", "max_seconds"], 1.0)
    audio_only = sh(project, "dvc", "repro")
    assert "Stage 'prepare' didn't change" in audio_only and "Running stage 'decode'" in audio_only
    assert "audio: data/decoded/audio written: 4 decoded, 0 reused" in audio_only
    assert "frames: data/decoded/frames unchanged: 0 decoded, 4 reused" in audio_only
    assert "Stage 'extract@resnet18' didn't change" in audio_only  # it reads the frames store only

    set_param(project, "decode", ["views", "frames", "num_frames"], 3)
    frames_changed = sh(project, "dvc", "repro")
    assert "frames: data/decoded/frames written: 4 decoded, 0 reused" in frames_changed
    assert "Running stage 'extract@resnet18'" in frames_changed
    assert StoreReader(project / "data/features/resnet18").num_rows == 12

    set_param(project, "backbones", ["resnet18", "dtype"], "float32")
    backbone_only = sh(project, "dvc", "repro")
    assert "Stage 'decode' didn't change" in backbone_only and "Running stage 'extract@resnet18'" in backbone_only

    set_param(project, "heads", ["risky", "lr"], 0.01)
    head_only = sh(project, "dvc", "repro")
    assert "Running stage 'train@risky'" in head_only and "Running stage 'evaluate@risky'" in head_only
    for stage in ["prepare", "decode", "extract@resnet18"]:
        assert f"Stage '{stage}' didn't change" in head_only
    assert "Running stage 'report'" in head_only  # it shows the head
    metrics = sh(project, "dvc", "metrics", "show")
    assert "data/heads/risky/metrics.json" in metrics and "test.accuracy" in metrics


def test_an_encoder_param_retrains_and_re_embeds_and_a_head_param_touches_neither(project):
    set_param(project, "heads", ["risky", "inputs"], [{"store": "data/features/convlstm_ae", "pool": "transformer"}])
    first = sh(project, "dvc", "repro")
    for stage in ["train-encoder@convlstm_ae", "encode@convlstm_ae", "train@risky"]:
        assert f"Running stage '{stage}'" in first
    encoder = project / "data/encoders/convlstm_ae"
    assert (encoder / "model.pt").is_file() and len(list((encoder / "strips").glob("*.png"))) == 1  # one val video
    assert len(yaml.safe_load((encoder / "history.json").read_text())) == 2
    assert StoreReader(project / "data/features/convlstm_ae").row_shape == (8,)

    set_param(project, "encoders", ["convlstm_ae", "epochs"], 3)
    retrained = sh(project, "dvc", "repro")
    for stage in ["train-encoder@convlstm_ae", "encode@convlstm_ae", "train@risky"]:
        assert f"Running stage '{stage}'" in retrained
    for stage in ["decode", "extract@resnet18"]:
        assert f"Stage '{stage}' didn't change" in retrained

    set_param(project, "heads", ["risky", "lr"], 0.01)
    head_only = sh(project, "dvc", "repro")
    assert "Running stage 'train@risky'" in head_only
    for stage in ["train-encoder@convlstm_ae", "encode@convlstm_ae", "extract@resnet18"]:
        assert f"Stage '{stage}' didn't change" in head_only
