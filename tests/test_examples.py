"""The examples keep running (small epoch counts where they take a flag)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytest.importorskip("sklearn")


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("seed_reproduction.py", [], "reproduced"),
        ("digits.py", ["--epochs", "3"], "held-out accuracy"),
        ("diabetes.py", ["--epochs", "3"], "held-out R^2"),
        ("sklearn_estimators.py", [], "FlatMLPRegressor"),
    ],
)
def test_example_runs(script, args, expect, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout
