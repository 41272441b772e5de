"""The wheel works on its own: build it, install it with only its core dependencies in a fresh venv, run the demo.

The venv is made WITHOUT the system site-packages: the development environment's (editable)
flatnet_xp must neither shadow nor clash with the wheel under test, and the wheel must not lean on
anything the dependencies in ``pyproject.toml`` do not declare. numpy and array-api-compat come from
pip's cache or PyPI; without a network the test is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

_NETWORK_SIGNS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "No matching distribution found",
    "Could not find a version that satisfies",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _run(cmd: list[str], what: str, cwd: Path, timeout: int = 240) -> str:
    """Run ``cmd``; skip on network trouble (outside CI), fail on anything else."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: no answer within {timeout} s")
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        clue = next((line.strip() for line in output.splitlines() if any(s in line for s in _NETWORK_SIGNS)), None)
        if clue is not None and not os.environ.get("CI"):
            pytest.skip(f"{what}: PyPI is not reachable from here ({clue[:200]})")
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{output[-4000:]}")
    return proc.stdout


def test_wheel_installs_alone_and_runs_the_demo(tmp_path):
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        "building the wheel",
        tmp_path,
    )
    (wheel,) = dist.glob("flatnet_xp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "flatnet_xp/py.typed" in names and "flatnet_xp/cli/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"could not create a venv here ({exc})")
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        "installing the wheel with numpy, array-api-compat",
        tmp_path,
    )

    where = _run(
        [str(python), "-c", "import flatnet_xp, numpy, array_api_compat; print(flatnet_xp.__file__)"],
        "importing the installed package",
        tmp_path,
    )
    installed = Path(where.strip())
    assert venv in installed.parents, f"imported {installed}, not the wheel installed in {venv}"
    assert (installed.parent / "py.typed").exists()
    freeze = _run([str(python), "-m", "pip", "freeze"], "listing the venv", tmp_path)
    assert "torch" not in freeze and "safetensors" not in freeze and "matplotlib" not in freeze

    version = _run([str(bindir / "flatnet-xp"), "--version"], "flatnet-xp --version", tmp_path)
    assert version.startswith("flatnet_xp ")
    out = _run([str(bindir / "flatnet-xp"), "demo", "--no-plot"], "flatnet-xp demo --no-plot", tmp_path)
    assert "reproduced" in out and "NOT reproduced" not in out
