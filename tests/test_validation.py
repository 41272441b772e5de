"""Bad input is refused at the public boundary with a clear message; the caller's data is untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flatnet_xp as fx


def with_value(a: np.ndarray, flat_index: int, value: float) -> np.ndarray:
    """A copy of ``a`` with one element replaced."""
    out = a.copy()
    out.flat[flat_index] = value
    return out


def net_and_data(backend: str = "numpy"):
    net = fx.FlatMLP([3, 4, 2], activations=["tanh", "identity"], backend=backend, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    return net, rng.normal(size=(10, 3)), rng.normal(size=(10, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer_sizes": [4]}, ValueError, "layer_sizes: expected at least 2"),
        ({"layer_sizes": [4, 0]}, ValueError, r"layer_sizes\[1\]: expected a positive integer, got 0"),
        ({"layer_sizes": [4, -1]}, ValueError, r"layer_sizes\[1\]: expected a positive integer, got -1"),
        ({"layer_sizes": [4, 2.0]}, TypeError, r"layer_sizes\[1\]: expected a positive integer, got float"),
        ({"layer_sizes": None}, TypeError, "layer_sizes: expected a sequence"),
        ({"activations": "swish"}, ValueError, r"activations: expected names from .*got 'swish'"),
        ({"activations": ["relu", "relu", "relu"]}, ValueError, "activations: expected one name or 1 names.*got 3"),
        ({"activations": 3}, TypeError, "activations: expected a name or a list"),
        ({"backend": "tensorflow"}, ValueError, r"backend: expected one of .*got 'tensorflow'"),
        ({"backend": 3.5}, TypeError, "backend: expected a name"),
        ({"dtype": "int32"}, TypeError, r"dtype: expected one of \('float32', 'float64'\), got 'int32'"),
        ({"dtype": "float16"}, TypeError, "dtype: expected one of"),
        ({"seed": -1}, ValueError, "seed: expected an integer >= 0, got -1"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    args = {"layer_sizes": [4, 2]} | kwargs
    with pytest.raises(error, match=match):
        fx.FlatMLP(args.pop("layer_sizes"), **args)


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        (np.zeros((5, 4)), ValueError, r"X: expected 3 features \(columns\), got ndarray of shape \(5, 4\)"),
        (np.zeros(3), ValueError, r"X: expected a 2-D array, got ndarray of shape \(3,\)"),
        (np.zeros((2, 3, 1)), ValueError, "X: expected a 2-D array"),
        (np.array([["a", "b", "c"]]), TypeError, "X: expected a numeric"),
        (np.zeros((2, 3), dtype=complex), TypeError, "X: expected a numeric"),
        (np.zeros((0, 3)), ValueError, "X: expected non-empty data"),
        ("abc", TypeError, "X: expected a numeric array, got str"),
    ],
)
def test_bad_features_for_forward(xp, X, error, match):
    net, _, _ = net_and_data(xp)
    with pytest.raises(error, match=match):
        net.forward(X)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda X, Y: (X, Y[:7]), ValueError, r"Y: expected 10 rows to match X, got ndarray of shape \(7, 2\)"),
        (lambda X, Y: (X, Y[:, :1]), ValueError, r"Y: expected targets of shape \(n, 2\), got .* \(10, 1\)"),
        (lambda X, Y: (with_value(X, 4, np.nan), Y), ValueError, "X: expected finite values"),
        (lambda X, Y: (X, with_value(Y, 3, np.inf)), ValueError, "Y: expected finite values"),
        (lambda X, Y: (X[:0], Y[:0]), ValueError, "X: expected non-empty data"),
        (lambda X, Y: (X, np.array(["x"] * 10)), TypeError, "Y: expected a numeric"),
    ],
)
def test_bad_data_for_fit(xp, change, error, match):
    net, X, Y = net_and_data(xp)
    X, Y = change(X, Y)
    with pytest.raises(error, match=match):
        net.fit(X, Y, optimizer=fx.SGD(lr=0.1), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size: expected an integer >= 1, got 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size: expected an integer >= 1, got float"),
        ({"epochs": -1}, ValueError, "epochs: expected an integer >= 0, got -1"),
        ({"loss": "hinge"}, ValueError, r"loss: expected one of \['bce', 'cross_entropy', 'mse'\], got 'hinge'"),
        ({"optimizer": "adam"}, TypeError, "optimizer: expected a flatnet_xp Optimizer"),
        ({"shuffle": "yes"}, TypeError, "shuffle: expected a bool"),
        ({"patience": 0}, ValueError, "patience: expected an integer >= 1"),
        ({"min_delta": -1.0}, ValueError, "min_delta: expected a finite number"),
        ({"callbacks": [3]}, TypeError, "callbacks: expected a callable"),
        ({"validation_data": np.zeros((3, 3))}, TypeError, "validation_data: expected a pair"),
        ({"validation_data": (np.zeros((3, 4)), np.zeros((3, 2)))}, ValueError, r"X_val: expected 3 features"),
        ({"progress": "on"}, TypeError, "progress: expected True, False or None"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every: expected an integer >= 1"),
    ],
)
def test_bad_fit_arguments(kwargs, error, match):
    net, X, Y = net_and_data()
    before = net.params.copy()
    with pytest.raises(error, match=match):
        net.fit(X, Y, **({"optimizer": fx.SGD(lr=0.1), "progress": False} | kwargs))
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (fx.SGD, {"lr": -0.1}, ValueError, r"lr: expected a finite number in \[0.0, inf\], got -0.1"),
        (fx.SGD, {"lr": float("nan")}, ValueError, "lr: expected a finite number"),
        (fx.SGD, {"lr": "fast"}, TypeError, "lr: expected a non-negative number or a schedule"),
        (fx.SGD, {"lr": 0.1, "momentum": 1.5}, ValueError, "momentum: expected a finite number in"),
        (fx.SGD, {"lr": 0.1, "nesterov": True}, ValueError, "nesterov: Nesterov momentum needs momentum > 0"),
        (fx.Adam, {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\]: expected a finite number"),
        (fx.Adam, {"betas": 0.9}, TypeError, "betas: expected a pair"),
        (fx.Adam, {"eps": 0.0}, ValueError, r"eps: expected a finite number in \(0.0"),
        (fx.AdamW, {"weight_decay": -1e-2}, ValueError, "weight_decay: expected a finite number"),
        (fx.RMSprop, {"alpha": 2.0}, ValueError, "alpha: expected a finite number"),
        (fx.Adam, {"clip_norm": 0.0}, ValueError, "clip_norm: expected a finite number in \\(0.0"),
    ],
)
def test_bad_optimizer_hyperparameters(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (np.array([0, 1, 3, 0]), ValueError, r"Y: expected class labels in \[0, 2\] for 3 outputs, found 3"),
        (np.array([0, -1, 1, 0]), ValueError, "found -1"),
        (np.array([0.0, 1.5, 1.0, 0.0]), ValueError, "Y: expected integer class labels, found non-integer"),
        (np.array([True, False, True, False]), TypeError, "Y: expected integer class labels"),
    ],
)
def test_bad_class_labels_for_cross_entropy(xp, labels, error, match):
    net = fx.FlatMLP([2, 3], activations="identity", backend=xp, dtype="float64")
    with pytest.raises(error, match=match):
        net.fit(np.zeros((4, 2)), labels, loss="cross_entropy", optimizer=fx.SGD(lr=0.1), progress=False)


def test_integral_float_labels_are_accepted():
    net = fx.FlatMLP([2, 3], activations="identity", dtype="float64", seed=0)
    ints = net.loss_and_grad(np.ones((3, 2)), np.array([0, 2, 1]), loss="cross_entropy")[0]
    floats = net.loss_and_grad(np.ones((3, 2)), np.array([0.0, 2.0, 1.0]), loss="cross_entropy")[0]
    assert ints == floats


@pytest.mark.parametrize(
    ("w", "b", "error", "match"),
    [
        (np.zeros(19), np.zeros(6), ValueError, r"w: expected a 1-D array of length 20, got ndarray of shape \(19,\)"),
        (np.zeros(20), np.zeros(5), ValueError, r"b: expected a 1-D array of length 6"),
        (np.zeros((4, 5)), np.zeros(6), ValueError, "w: expected a 1-D array"),
        (np.full(20, np.nan), np.zeros(6), ValueError, "w: expected finite values"),
        (np.zeros(20), np.array([0, 0, 0, 0, np.inf, 0]), ValueError, "b: expected finite values"),
        (["a"] * 20, np.zeros(6), TypeError, "w: expected a numeric"),
    ],
)
def test_bad_set_params(xp, w, b, error, match):
    net, _, _ = net_and_data(xp)
    before = net.get_params()
    with pytest.raises(error, match=match):
        net.set_params(w, b)
    np.testing.assert_array_equal(net.get_params()[0], before[0])


def test_weight_index_must_name_a_layer():
    net, _, _ = net_and_data()
    with pytest.raises(IndexError, match=r"k: expected a weight-layer index in \[0, 1\], got 2"):
        net.weight(2)


def test_fit_does_not_modify_the_callers_arrays(xp):
    net, X, Y = net_and_data(xp)
    X32 = X.astype(np.float32)
    copies = X.copy(), Y.copy(), X32.copy()
    net.fit(X, Y, epochs=2, batch_size=3, optimizer=fx.Adam(lr=0.1), progress=False, seed=0)
    net.fit(X32, Y, epochs=1, optimizer=fx.SGD(lr=0.1), progress=False)
    net.loss_and_grad(X, Y)
    net.predict(X)
    for original, copy in zip((X, Y, X32), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_fit_uses_data_in_the_networks_dtype_without_copying():
    net, X, Y = net_and_data()
    data = net._dataset(X, Y, "mse")
    x, _ = data.batch(slice(0, 4))
    assert np.shares_memory(x, X)


@settings(max_examples=60, deadline=None)
@given(
    epochs=st.one_of(st.integers(-5, 3), st.floats(allow_nan=True), st.text(max_size=2), st.none()),
    batch_size=st.one_of(st.integers(-3, 12), st.floats(allow_nan=True), st.booleans()),
)
def test_fit_either_trains_or_refuses_cleanly(epochs, batch_size):
    net, X, Y = net_and_data()
    before = net.params.copy()
    valid = (
        isinstance(epochs, int)
        and not isinstance(epochs, bool)
        and epochs >= 0
        and isinstance(batch_size, int)
        and not isinstance(batch_size, bool)
        and batch_size >= 1
    )
    if valid:
        hist = net.fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer=fx.SGD(lr=0.01), progress=False)
        assert len(hist.loss) == epochs
    else:
        with pytest.raises((TypeError, ValueError), match=r"epochs|batch_size"):
            net.fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer=fx.SGD(lr=0.01), progress=False)
        np.testing.assert_array_equal(net.params, before)
