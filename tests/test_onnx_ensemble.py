"""``FlatEnsemble.to_onnx``: one ONNX model of every member and their mean, served by onnxruntime
as the ensemble predicts (float64 to 1e-10, float32 to 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import flatnet_xp as fx  # noqa: E402
from flatnet_xp.backends import to_numpy  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4))
LABELS = RNG.integers(0, 3, size=40)
CASES = {
    "cross_entropy": (3, ["tanh", "identity"], LABELS),
    "bce": (1, ["relu", "identity"], (LABELS > 0).astype(np.float64)[:, None]),
    "mse": (2, ["leaky_relu", "identity"], RNG.normal(size=(40, 2))),
    "poisson": (1, ["sigmoid", "identity"], RNG.poisson(2.0, size=(40, 1)).astype(np.float64)),
}
TOL = {"float64": 1e-10, "float32": 1e-5}


def served(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": x}), strict=True))


def trained(loss, dtype, backend="numpy", n_models=3):
    n_out, acts, Y = CASES[loss]
    ens = fx.FlatEnsemble([4, 5, n_out], n_models, activations=acts, dtype=dtype, seed=0, backend=backend)
    ens.fit(X.astype(dtype), Y if loss == "cross_entropy" else Y.astype(dtype), epochs=2, batch_size=8, loss=loss)
    return ens


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", sorted(CASES))
def test_the_ensembles_mean_and_spread_match_predict(tmp_path, loss, dtype):
    ens = trained(loss, dtype)
    ens.to_onnx(tmp_path / "e.onnx")
    out = served(tmp_path / "e.onnx", X.astype(dtype))
    mean, std = ens.predict(X, return_std=True)
    np.testing.assert_allclose(out["output"], to_numpy(mean), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(out["std"], to_numpy(std), rtol=TOL[dtype], atol=TOL[dtype])
    assert out["output"].dtype == np.dtype(dtype) and "members" not in out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["cross_entropy", "bce"])
def test_a_classifier_ensembles_probabilities_and_labels_match(tmp_path, loss, dtype):
    ens = trained(loss, dtype)
    ens.to_onnx(tmp_path / "e.onnx")
    out = served(tmp_path / "e.onnx", X.astype(dtype))
    np.testing.assert_allclose(out["probabilities"], to_numpy(ens.predict_proba(X)), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_array_equal(out["label"], to_numpy(ens.predict_class(X)))


@pytest.mark.parametrize("n_models", [1, 4])
def test_every_members_outputs_on_request(tmp_path, n_models):
    ens = trained("mse", "float64", n_models=n_models)
    ens.to_onnx(tmp_path / "e.onnx", members=True)
    out = served(tmp_path / "e.onnx", X)
    assert out["members"].shape == (n_models, 40, 2)
    np.testing.assert_allclose(out["members"], to_numpy(ens.predict(X, members=True)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("jax", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("jax") is None, reason="jax is not installed"))])  # fmt: skip
def test_an_ensemble_of_any_backend_exports(tmp_path, backend):
    ens = trained("cross_entropy", "float32", backend=backend)
    ens.to_onnx(tmp_path / "e.onnx", dtype="float64")
    out = served(tmp_path / "e.onnx", X)
    np.testing.assert_allclose(out["probabilities"], to_numpy(ens.predict_proba(X)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"members": "yes"}, TypeError, "members: expected a bool"),
        ({"dtype": "int32"}, (TypeError, ValueError), "dtype"),
        ({"opset": 3}, ValueError, "opset"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, error, message):
    ens = trained("mse", "float64")
    with pytest.raises(error, match=message):
        ens.to_onnx(tmp_path / "e.onnx", **kwargs)
    assert not (tmp_path / "e.onnx").exists()


def test_a_folder_as_the_path_is_refused(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        trained("mse", "float64").to_onnx(tmp_path)
