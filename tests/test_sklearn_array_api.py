"""The estimators under ``sklearn.config_context(array_api_dispatch=True)``: they train on the input's
namespace and device and answer in it; scikit-learn's array API estimator checks pass.

Array API dispatch needs ``SCIPY_ARRAY_API=1`` in the environment before scipy is imported, so the
tests below run in a subprocess that sets it (:func:`test_array_api_support_in_a_subprocess`); when
the whole run already has it, they run directly and the subprocess is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import config_context
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from flatnet_xp.backends import to_numpy
from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor

DISPATCH = os.environ.get("SCIPY_ARRAY_API") == "1"
needs_dispatch = pytest.mark.skipif(not DISPATCH, reason="runs in test_array_api_support_in_a_subprocess")


def test_array_api_support_in_a_subprocess(tmp_path: Path) -> None:
    if DISPATCH:
        pytest.skip("SCIPY_ARRAY_API=1 is set: the tests of this file run directly")
    if not any(importlib.util.find_spec(name) for name in ("array_api_strict", "torch")):
        pytest.skip("neither array_api_strict nor torch is installed")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(Path(__file__).resolve())],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout, proc.stdout[-3000:]


def _array_api_checks() -> pytest.MarkDecorator:
    """scikit-learn's estimator checks, only those of the array API (the others: tests/test_sklearn.py)."""
    every = parametrize_with_checks(
        [FlatMLPClassifier(max_iter=20, random_state=0), FlatMLPRegressor(max_iter=20, random_state=0)]
    )
    argnames, values = every.mark.args

    def name(value: object) -> str:
        check = value.values[1] if hasattr(value, "values") else value[1]  # type: ignore[index]
        return getattr(check, "func", check).__name__

    selected = [v for v in values if name(v).startswith("check_array_api")]
    return pytest.mark.parametrize(argnames, selected, ids=every.mark.kwargs.get("ids"))


@needs_dispatch
@_array_api_checks()
def test_scikit_learn_array_api_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _namespaces() -> list[object]:
    def torch_cpu(a: np.ndarray) -> object:
        import torch

        return torch.asarray(a, device="cpu")

    def strict(a: np.ndarray) -> object:
        import array_api_strict

        return array_api_strict.asarray(a)

    def jax_array(a: np.ndarray) -> object:
        import jax.numpy as jnp

        return jnp.asarray(a)

    return [
        pytest.param("torch", torch_cpu, "torch", id="torch"),
        pytest.param("array_api_strict", strict, "array_api_strict", id="strict"),
        pytest.param("jax", jax_array, "jax", id="jax"),
    ]


@needs_dispatch
@pytest.mark.parametrize(("module", "convert", "backend"), _namespaces())
@pytest.mark.parametrize("early_stopping", [False, True])
def test_training_and_answers_follow_the_namespace_of_x(module, convert, backend, early_stopping):
    pytest.importorskip(module)
    X, y = load_iris(return_X_y=True)
    clf_params = dict(hidden_layer_sizes=(8,), max_iter=15, early_stopping=early_stopping, random_state=0)
    reg_params = dict(hidden_layer_sizes=(8,), max_iter=15, early_stopping=early_stopping, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref_clf = FlatMLPClassifier(**clf_params).fit(X, y)
        ref_reg = FlatMLPRegressor(**reg_params).fit(X, X[:, 0])
        with config_context(array_api_dispatch=True):
            Xa = convert(X)
            clf = FlatMLPClassifier(**clf_params).fit(Xa, convert(y))
            reg = FlatMLPRegressor(**reg_params).fit(Xa, convert(X[:, 0]))
            outputs = {
                "predict_proba": (clf.predict_proba(Xa), ref_clf.predict_proba(X)),
                "predict_log_proba": (clf.predict_log_proba(Xa), ref_clf.predict_log_proba(X)),
                "predict": (clf.predict(Xa), ref_clf.predict(X)),
                "regressor predict": (reg.predict(Xa), ref_reg.predict(X)),
            }
    assert clf.net_.backend == reg.net_.backend == backend
    # The same initial weights and sample orders: float64 agrees to rounding (JAX computes in
    # float32 unless its x64 mode is on, as it creates float32 arrays then).
    tol = 1e-10 if clf.net_.dtype_name == "float64" else 1e-4
    for what, (got, want) in outputs.items():
        assert type(got).__module__.split(".")[0] == type(Xa).__module__.split(".")[0], what
        np.testing.assert_allclose(np.asarray(to_numpy(got), dtype=np.float64), want, atol=tol, err_msg=what)


@needs_dispatch
def test_predicting_on_another_namespace_is_refused():
    array_api_strict = pytest.importorskip("array_api_strict")
    X, y = load_iris(return_X_y=True)
    with config_context(array_api_dispatch=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = FlatMLPClassifier((4,), max_iter=2, random_state=0).fit(
            array_api_strict.asarray(X), array_api_strict.asarray(y)
        )
        with pytest.raises(ValueError, match="must use the same namespace"):
            clf.predict(X)
