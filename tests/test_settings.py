"""Settings: read from the environment once, at the command line's edge, checked, and passed down."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from test_decode import make_project, run_cli

from extract.core.cli import EXIT_ERROR
from extract.core.config import ConfigError
from extract.core.settings import VARIABLES, Settings
from extract.stages.decode import run_decode, views_from_params
from extract.store import StoreReader


def test_environment_values_are_typed_and_flags_go_over_them():
    settings = Settings.from_environment(
        {"REELFEAT_WORKERS": "3", "REELFEAT_SHARD_MB": "0.5", "REELFEAT_BACKEND": "ray", "DVC_STAGE": "decode"},
        workers=None,
        backend="local",
    )
    assert (settings.workers, settings.shard_bytes, settings.backend, settings.dvc_stage) == (
        3,
        1 << 19,
        "local",
        "decode",
    )
    assert Settings.from_environment({}) == Settings()  # nothing set: the documented defaults
    assert Settings.from_environment({"REELFEAT_WORKERS": ""}).workers is None  # set but empty: as if unset


@pytest.mark.parametrize(
    ("environ", "flags", "message"),
    [
        ({"REELFEAT_WORKERS": "two"}, {}, "REELFEAT_WORKERS: 'two' is not an integer"),
        ({"REELFEAT_FFMPEG_TIMEOUT": "soon"}, {}, "REELFEAT_FFMPEG_TIMEOUT: 'soon' is not a number"),
        ({"REELFEAT_SHARD_MB": "0"}, {}, "REELFEAT_SHARD_MB: 0.0 is out of range; give a size above 0 MB"),
        ({"REELFEAT_BACKEND": "spark"}, {}, "REELFEAT_BACKEND: 'spark' is not a backend; choose one of"),
        ({}, {"workers": -1}, "--workers: -1 is out of range; give 0"),
        ({}, {"backend": "spark"}, "--backend: 'spark' is not a backend"),
    ],
)
def test_a_bad_setting_names_its_variable_or_flag_and_the_fix(environ, flags, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_environment(environ, **flags)


def test_a_bad_variable_stops_a_command_in_one_line_before_it_touches_a_file(tmp_path, clip, capsys, monkeypatch):
    root = make_project(tmp_path / "p", [str(clip)])
    assert run_cli(root, "prepare")[0] == 0
    monkeypatch.setenv("REELFEAT_WORKERS", "two")
    code, _, err = run_cli(root, "decode", capsys=capsys)
    assert code == EXIT_ERROR and err.strip().splitlines() == [
        "error: REELFEAT_WORKERS: 'two' is not an integer; unset it or give an integer"
    ]
    assert not (root / "data/decoded").exists()


def test_decode_uses_the_settings_it_is_given_not_the_environment(tmp_path, clip, monkeypatch):
    monkeypatch.setenv("REELFEAT_FFMPEG_TIMEOUT", "300")
    views = views_from_params({"views": {"frames": {"type": "frames", "num_frames": 2, "size": [16, 16]}}})
    rows = [{"id": f"v{i}", "video": str(clip), "sha256": str(i)} for i in range(3)]
    hurried = run_decode(rows, views, tmp_path / "hurried", settings=Settings(workers=0, ffmpeg_timeout_s=0.001))
    assert set(hurried["frames"].failures.values()) == {
        "probe: reading the video took longer than 0.001 s (REELFEAT_FFMPEG_TIMEOUT)"
    }
    small = run_decode(
        rows, views, tmp_path / "small", settings=Settings(workers=0, shard_mb=2 * 16 * 16 * 3 / (1 << 20))
    )
    reader = StoreReader(tmp_path / "small/frames")
    assert small["frames"].computed == 3 and len(reader.shards) == 3  # one video's two frames fill a shard
    np.testing.assert_array_equal(reader.get("v0")[0], reader.get("v2")[0])


def test_only_the_settings_module_reads_the_environment():
    """Every module takes its settings from above; whisper's cache folder follows whisper's own variable."""
    readers = []
    for path in sorted([*ROOT.glob("extract/**/*.py"), *ROOT.glob("heads/**/*.py"), *ROOT.glob("reelfeat/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            reads = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
            if reads and not (isinstance(node.ctx, ast.Load) and _writes_only(path, node)):
                readers.append(str(path.relative_to(ROOT)))  # once per read
    assert readers == ["extract/backbones/whisper.py", "extract/core/settings.py"]
    assert all(name.startswith(("REELFEAT_", "RAY_", "DVC_")) for name in VARIABLES.values())


def _writes_only(path: Path, node: ast.Attribute) -> bool:
    """`os.environ.setdefault(...)`: a default handed to a library (tokenizers), not a read."""
    line = path.read_text(encoding="utf-8").splitlines()[node.lineno - 1]
    return "os.environ.setdefault(" in line
