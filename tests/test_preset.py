"""`reelfeat preset`: the foundation-model presets go into params.yaml beside the demo's entries,
comments kept, once; DVC then has their stages, each reading only its own params."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, git, sh

from extract.core.config import ConfigError
from reelfeat.preset import add_preset

FOUNDATION = yaml.safe_load((ROOT / "reelfeat/presets/foundation.yaml").read_text())


def test_a_preset_adds_its_entries_keeping_the_comments_and_a_second_time_changes_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = yaml.safe_load(params.read_text())
    added = add_preset("foundation", params)
    after = yaml.safe_load(params.read_text())
    assert set(added) == {f"backbones.{key}" for key in FOUNDATION["backbones"]} | {
        f"heads.{key}" for key in FOUNDATION["heads"]
    } | {f"decode.views.{key}" for key in FOUNDATION["decode"]["views"]}
    assert after["backbones"] == {**before["backbones"], **FOUNDATION["backbones"]}
    assert after["heads"] == {**before["heads"], **FOUNDATION["heads"]}
    assert after["decode"]["views"] == {**before["decode"]["views"], **FOUNDATION["decode"]["views"]}
    assert {key: after[key] for key in before if key not in ("backbones", "heads", "decode")} == {
        key: before[key] for key in before if key not in ("backbones", "heads", "decode")
    }
    text = params.read_text()
    assert "# Frozen backbones, one `extract@<name>` stage" in text  # params.yaml's own comments stay
    assert "# V-JEPA 2 ViT-L: one 1024-d row per 2-frame tubelet step" in text  # and the preset's come along
    assert add_preset("foundation", params) == [] and params.read_text() == text


def test_an_entry_of_the_same_name_with_other_values_is_refused_by_name(tmp_path):
    params = tmp_path / "params.yaml"
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values["backbones"]["vjepa2"] = {"input": "data/decoded/clips", "rows": "clip"}
    params.write_text(yaml.safe_dump(values, sort_keys=False))
    text = params.read_text()
    with pytest.raises(ConfigError, match="backbones.vjepa2 already exists with other values"):
        add_preset("foundation", params)
    assert params.read_text() == text
    run = subprocess.run(
        [sys.executable, "-m", "reelfeat", "--params", str(params), "preset", "nope"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1 and run.stderr.strip() == "error: no preset 'nope'; presets: foundation"


def test_the_preset_stages_exist_and_each_reads_only_its_own_params(tmp_path):
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    add_preset("foundation", tmp_path / "params.yaml")
    git(tmp_path, "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    with Repo(str(tmp_path)) as repo:
        stages = {stage.name: stage for stage in repo.index.stages}
        params = {
            name: {key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params}
            for name, stage in stages.items()
        }
        outs = {str(Path(out.fs_path).relative_to(tmp_path)) for stage in stages.values() for out in stage.outs}
    for key, values in FOUNDATION["backbones"].items():
        assert params[f"extract@{key}"] == {f"backbones.{key}"}
        assert values["input"] in outs | {"data/prepared/manifest.csv"} or values["input"].startswith("data/decoded/")
    for key, values in FOUNDATION["heads"].items():
        assert params[f"train@{key}"] == {f"heads.{key}"} and f"evaluate@{key}" in stages
        assert all(spec["store"] in outs for spec in values["inputs"])  # each store is some stage's output
    for view in FOUNDATION["decode"]["views"]:
        assert view in yaml.safe_load((tmp_path / "params.yaml").read_text())["decode"]["views"]
