"""skl2onnx converts Pipelines holding FlatMLPClassifier / FlatMLPRegressor, served as they predict."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor, register_skl2onnx  # noqa: E402

TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def registered():
    register_skl2onnx()


def fitted(estimator, X, y) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Pipeline([("scale", StandardScaler()), ("mlp", estimator)]).fit(X, y)


def serve(pipe, X, options=None) -> list:
    model = skl2onnx.to_onnx(pipe, X[:1], options=options)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


def X_of(dtype: str, n: int = 50) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "labels", [np.array(["cat", "dog"]), np.array([3, 7]), np.array(["a", "b", "c"]), np.array([0, 1, 2, 5])],
    ids=["binary-str", "binary-int", "3-str", "4-int"],
)  # fmt: skip
def test_classifier_pipeline(labels, dtype):
    X = X_of(dtype)
    y = labels[np.random.default_rng(1).integers(0, len(labels), len(X))]
    clf = FlatMLPClassifier(hidden_layer_sizes=(6, 5), max_iter=30, random_state=0, dtype=dtype)
    pipe = fitted(clf, X, y)
    label, proba = serve(pipe, X, {id(clf): {"zipmap": False}})
    np.testing.assert_array_equal(label, pipe.predict(X))
    assert proba.dtype == np.dtype(dtype)
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=TOL[dtype], atol=TOL[dtype])


def test_classifier_zipmap_default_and_nocl():
    X = X_of("float32")
    y = np.array(["x", "y", "z"])[np.arange(len(X)) % 3]
    clf = FlatMLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
    pipe = fitted(clf, X, y)
    label, proba = serve(pipe, X)
    assert list(proba[0]) == ["x", "y", "z"]  # a ZipMap: one dict per row, keyed by class
    np.testing.assert_allclose([p["z"] for p in proba], pipe.predict_proba(X)[:, 2], rtol=1e-5)
    label, _ = serve(pipe, X, {id(clf): {"nocl": True, "zipmap": False}})
    np.testing.assert_array_equal(label, np.searchsorted(clf.classes_, pipe.predict(X)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_pipeline(n_outputs, loss, dtype):
    X = X_of(dtype)
    Y = np.abs(np.random.default_rng(2).normal(size=(len(X), n_outputs)))
    reg = FlatMLPRegressor(hidden_layer_sizes=(6,), loss=loss, max_iter=30, random_state=0, dtype=dtype)
    pipe = fitted(reg, X, Y[:, 0] if n_outputs == 1 else Y)
    (out,) = serve(pipe, X)
    assert out.shape == (len(X), n_outputs) and out.dtype == np.dtype(dtype)
    want = pipe.predict(X).reshape(len(X), n_outputs)
    np.testing.assert_allclose(out, want, rtol=TOL[dtype], atol=TOL[dtype])


def test_multilabel_classifier_is_refused():
    X = X_of("float32")
    Y = (np.random.default_rng(3).random((len(X), 3)) > 0.5).astype(int)
    clf = FlatMLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with pytest.raises(NotImplementedError, match="FlatMLPClassifier: multilabel models have no skl2onnx conversion"):
        skl2onnx.to_onnx(fitted(clf, X, Y), X[:1])
