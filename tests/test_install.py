"""`pip install .` gives a working `reelfeat` command, and pyproject.toml declares what requirements.txt pins."""

from __future__ import annotations

import re
import shutil
import site
import subprocess
import sys
import tomllib
import venv

from conftest import ROOT


def test_pip_install_into_a_fresh_venv_gives_a_working_reelfeat_command(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # the dependencies come from the test environment (tests run offline)
    (next((env_dir / "lib").glob("python3*/site-packages")) / "test-deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    # `pip install .` in two steps, offline: the wheel is built with this environment's setuptools
    # (pip would fetch one into an isolated build environment), then installed into the fresh venv
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for name in ["extract", "heads", "reelfeat"]:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, source],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("reelfeat-*.whl")
    # --force-reinstall: through test-deps.pth pip also sees this checkout's own install (a CI venv's
    # editable reelfeat 0.1.0) and may call the wheel "already satisfied", leaving no `reelfeat` command;
    # pip never uninstalls outside the venv it installs into
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    command = env_dir / "bin" / "reelfeat"
    done = subprocess.run([command, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ["prepare", "decode", "features", "train", "evaluate", "predict", "report", "export-numpy"]:
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), f"reelfeat --help lists no {name}"
    # it runs the installed copy, not this checkout, and the installed copy has every package
    where = subprocess.run(
        [python, "-c", "import extract, heads, reelfeat.report.page; print(reelfeat.__file__, heads.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert all(str(env_dir) in path for path in where.stdout.split())
    bad = subprocess.run([command, "--params", str(tmp_path / "none.yaml"), "report"], capture_output=True, text=True)
    assert bad.returncode == 1 and "params file not found" in bad.stderr


def test_pyproject_declares_every_pinned_requirement():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ]", d)[0].lower() for d in declared}
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line.split("#")[0]
    }
    assert names == pinned
    assert sys.version_info >= (3, 11)
