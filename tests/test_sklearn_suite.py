"""scikit-learn's own MLP test file, run against FlatMLPClassifier and FlatMLPRegressor.

The installed ``sklearn/neural_network/tests/test_mlp.py`` is copied to a temporary folder with its
one import line rewritten to import our estimators under scikit-learn's names, and run with pytest
in a subprocess. Every test must pass except those that read scikit-learn's private internals.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
OURS = "from flatnet_xp.sklearn import FlatMLPClassifier as MLPClassifier, FlatMLPRegressor as MLPRegressor"

#: Tests that read scikit-learn's private internals, with what they touch.
PRIVATE = {
    "test_fit": "plants private optimizer state (_coef_velocity, ...) and assigns coefs_",
    "test_gradient": "calls the private MLP._loss_grad_lbfgs on scikit-learn's packed parameter vector",
}

#: scikit-learn's ``global_random_seed`` fixture (its conftest parametrizes it; 42 is its default).
CONFTEST = """
import pytest


@pytest.fixture(params=[0, 42])
def global_random_seed(request):
    return request.param
"""


def _results(junit: Path) -> dict[str, str]:
    """``{test id: "passed" | "skipped" | "failed: <message>"}`` from a junit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            out[case.get("name", "?")] = f"failed: {bad.get('message', '')[:300]}"
        else:
            out[case.get("name", "?")] = "skipped" if case.find("skipped") is not None else "passed"
    return out


def test_scikit_learns_mlp_tests_pass_against_our_estimators(tmp_path: Path) -> None:
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    if not source.exists():
        pytest.skip(f"this scikit-learn ({sklearn.__version__}) was installed without its tests")
    text = source.read_text(encoding="utf-8")
    assert text.count(IMPORT) == 1, f"{source} no longer imports the estimators with: {IMPORT}"
    (tmp_path / "test_mlp.py").write_text(text.replace(IMPORT, OURS), encoding="utf-8")
    (tmp_path / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not this project's settings
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    junit = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_mlp.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert junit.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    results = _results(junit)
    excused = PRIVATE.keys()
    unexpected = {
        name: outcome
        for name, outcome in results.items()
        if outcome.startswith("failed") and name.split("[")[0] not in excused
    }
    assert not unexpected, "scikit-learn's MLP tests failing against ours:\n" + "\n".join(
        f"  {name}: {outcome}" for name, outcome in sorted(unexpected.items())
    )
    passed = sum(outcome == "passed" for outcome in results.values())
    assert passed >= 50, f"only {passed} of scikit-learn's tests passed: {results}"
