"""FlatMLP.to_onnx: every activation, loss, dtype, depth and backend served by onnxruntime as predict serves it."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import flatnet_xp as fx  # noqa: E402
from flatnet_xp.activations import ACTIVATIONS  # noqa: E402
from flatnet_xp.export import steps_of  # noqa: E402
from flatnet_xp.losses import LOSSES, get_loss  # noqa: E402
from flatnet_xp.preprocessing import Preprocessing  # noqa: E402

TOL = {"float64": 1e-10, "float32": 1e-5}


def serve(path, X) -> dict[str, np.ndarray]:
    """Every output of the ONNX model at ``path`` on ``X``, by name."""
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X}), strict=True))


def close(got, want, dtype) -> None:
    want = np.asarray(fx.to_numpy(want))
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def data(n: int, d: int, dtype: str, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(n, d)).astype(dtype)


# ------------------------------------------------------------------------------------ network and loss head
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", [None, *LOSSES])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("n_out", [1, 3])
def test_every_activation_and_loss_serves_predict(tmp_path, activation, loss, dtype, n_out):
    net = fx.FlatMLP([4, 6, 5, n_out], activation, dtype=dtype, seed=1)
    net.loss_ = loss
    net.to_onnx(tmp_path / "m.onnx")
    X = data(9, 4, dtype)
    out = serve(tmp_path / "m.onnx", X)
    close(out.pop("output"), net.predict(X), dtype)
    if loss in ("cross_entropy", "bce"):
        close(out.pop("probabilities"), net.predict_proba(X), dtype)
        np.testing.assert_array_equal(out.pop("label"), fx.to_numpy(net.predict_class(X)))
    elif loss == "poisson":
        close(out.pop("rate"), np.exp(fx.to_numpy(net.predict(X))), dtype)
    assert out == {}  # nothing else: mse and no loss give the raw outputs only


@pytest.mark.parametrize("sizes", [[3, 2], [3, 7, 2], [3, 4, 4, 4, 4, 4, 2]], ids=["0 hidden", "1 hidden", "5 hidden"])
def test_depths(tmp_path, sizes):
    net = fx.FlatMLP(sizes, "tanh", dtype="float64", seed=2)
    net.to_onnx(tmp_path / "m.onnx")
    X = data(5, 3, "float64")
    close(serve(tmp_path / "m.onnx", X)["output"], net.predict(X), "float64")
    gemms = [n for n in onnx.load(tmp_path / "m.onnx").graph.node if n.op_type == "Gemm"]
    assert len(gemms) == len(sizes) - 1


def test_networks_of_every_backend(tmp_path, xp):
    net = fx.FlatMLP([4, 8, 3], ["relu", "identity"], backend=xp, dtype="float64", seed=3)
    net.loss_ = "cross_entropy"
    net.to_onnx(tmp_path / "m.onnx")
    X = data(6, 4, "float64")
    out = serve(tmp_path / "m.onnx", X)
    close(out["output"], net.predict(X), "float64")
    close(out["probabilities"], net.predict_proba(X), "float64")


def test_initializers_are_the_layer_views_untransposed(tmp_path):
    net = fx.FlatMLP([3, 5, 2], "sigmoid", dtype="float64", seed=4)
    net.to_onnx(tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for k in range(2):
        np.testing.assert_array_equal(init[f"W{k}"], net.weight(k))
        np.testing.assert_array_equal(init[f"b{k}"], net.bias(k))
    assert all(a.i == 1 for n in model.graph.node if n.op_type == "Gemm" for a in n.attribute if a.name == "transB")


def test_batch_axis_is_dynamic(tmp_path):
    net = fx.FlatMLP([2, 3, 1], "relu", dtype="float32", seed=5)
    net.to_onnx(tmp_path / "m.onnx")
    dims = onnx.load(tmp_path / "m.onnx").graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 2
    for n in (1, 1000):
        X = data(n, 2, "float32")
        close(serve(tmp_path / "m.onnx", X)["output"], net.predict(X), "float32")


def test_dtype_other_than_the_networks(tmp_path):
    net = fx.FlatMLP([3, 4, 2], "tanh", dtype="float32", seed=6)
    net.to_onnx(tmp_path / "m.onnx", dtype="float64")  # float32 weights are exact in float64
    X = data(4, 3, "float64")
    close(serve(tmp_path / "m.onnx", X)["output"], net.to("numpy", dtype="float64").predict(X), "float64")


def test_scaled_loss_keeps_its_head(tmp_path):
    net = fx.FlatMLP([3, 2], "identity", dtype="float64", seed=7)
    net.loss_ = get_loss("cross_entropy").scaled(0.5)
    net.to_onnx(tmp_path / "m.onnx")
    assert set(serve(tmp_path / "m.onnx", data(2, 3, "float64"))) == {"output", "probabilities", "label"}


# ------------------------------------------------------------------------------------ stored preprocessing
def with_prep(task: str, n_out: int, loss: str, **kw) -> fx.FlatMLP:
    net = fx.FlatMLP([3, 5, n_out], ["relu", "identity"], dtype="float64", seed=8)
    net.loss_ = loss
    net.preprocessing = Preprocessing(("a", "b", "c"), (1.0, -2.0, 0.5), (2.0, 0.5, 3.0), "y", task, **kw)  # type: ignore[arg-type]
    return net


def test_regression_preprocessing_standardizes_and_unscales(tmp_path):
    net = with_prep("regress", 1, "mse", class_names=None, target_mean=10.0, target_scale=4.0)
    prep = net.preprocessing
    net.to_onnx(tmp_path / "m.onnx")
    X = data(7, 3, "float64")
    out = serve(tmp_path / "m.onnx", X)
    close(out["output"], net.predict(prep.transform(X)), "float64")
    close(out["prediction"], prep.unscale_target(net.predict(prep.transform(X))), "float64")


@pytest.mark.parametrize(("loss", "n_out"), [("cross_entropy", 3), ("bce", 1)])
def test_classification_preprocessing_decodes_class_names(tmp_path, loss, n_out):
    names = ("x", "y", "z") if n_out == 3 else ("no", "yes")
    net = with_prep("classify", n_out, loss, class_names=names)
    prep = net.preprocessing
    net.to_onnx(tmp_path / "m.onnx")
    X = data(20, 3, "float64")
    out = serve(tmp_path / "m.onnx", X)
    Z = prep.transform(X)
    np.testing.assert_array_equal(out["label"].astype(str), prep.decode(fx.to_numpy(net.predict_class(Z))))
    p = fx.to_numpy(net.predict_proba(Z))
    close(out["probabilities"], np.concatenate([1 - p, p], axis=1) if n_out == 1 else p, "float64")
    meta = {m.key: m.value for m in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert meta["feature_names"] == '["a", "b", "c"]' and meta["class_names"] == str(list(names)).replace("'", '"')


def test_preprocessing_false_exports_the_bare_network(tmp_path):
    net = with_prep("regress", 1, "mse", class_names=None)
    net.to_onnx(tmp_path / "m.onnx", preprocessing=False)
    X = data(3, 3, "float64")
    out = serve(tmp_path / "m.onnx", X)
    assert set(out) == {"output"}
    close(out["output"], net.predict(X), "float64")


def test_class_names_without_a_classification_loss_are_refused(tmp_path):
    net = with_prep("classify", 2, "cross_entropy", class_names=("a", "b"))
    net.loss_ = None
    with pytest.raises(ValueError, match="class names stored, but the network has no classification loss"):
        net.to_onnx(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_unknown_preprocessing_step_is_refused_by_name():
    stored = {**with_prep("regress", 1, "mse", class_names=None).preprocessing.to_dict(), "one_hot": {"c": ["u"]}}
    with pytest.raises(ValueError, match=r"cannot export step 'one_hot' to ONNX \(exportable: standardize"):
        steps_of(stored, 1)


# ------------------------------------------------------------------------------------ files and arguments
def test_overwrites_atomically_and_a_failed_build_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    net = fx.FlatMLP([2, 2], "relu", seed=9)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        net.to_onnx(path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary file left behind
    monkeypatch.undo()
    net.to_onnx(path)
    assert onnx.load(path).producer_name == "flatnet_xp"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dtype": "float16"}, TypeError, "dtype: expected float32 or float64"),
        ({"opset": 3}, ValueError, "opset: expected an integer from 14"),
        ({"opset": "17"}, TypeError, "opset: expected an integer"),
        ({"preprocessing": "yes"}, TypeError, "preprocessing: expected a bool"),
    ],
)
def test_bad_arguments_one_error_and_no_file(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        fx.FlatMLP([2, 2], "relu", seed=9).to_onnx(tmp_path / "m.onnx", **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("where", "message"), [("folder", "is a directory"), ("missing/m.onnx", "does not exist")])
def test_bad_paths(tmp_path, where, message):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=f"path: .*{message}"):
        fx.FlatMLP([2, 2], "relu", seed=9).to_onnx(tmp_path / where)


def test_float64_weights_beyond_float32_are_refused(tmp_path):
    net = fx.FlatMLP([1, 1], "identity", dtype="float64", seed=9)
    net.set_params(np.array([1e300]), np.array([0.0]))
    with pytest.raises(ValueError, match="dtype: the network's parameters are not all finite in float32"):
        net.to_onnx(tmp_path / "m.onnx", dtype="float32")
