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
        ({"dtype": "int32"}, TypeError, r"dtype: expected float32 or float64 .*got 'int32'"),
        ({"dtype": "float16"}, TypeError, "dtype: expected float32 or float64"),
        ({"dtype": int}, TypeError, "dtype: expected float32 or float64"),
        ({"init": "xavier"}, ValueError, r"init: expected one of \['auto', 'glorot', 'he', 'torch', 'sklearn'\]"),
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
        (
            {"loss": "hinge"},
            ValueError,
            r"loss: expected one of \['bce', 'cross_entropy', 'mse', 'poisson'\] or a flatnet_xp Loss, got 'hinge'",
        ),
        ({"optimizer": "adam"}, TypeError, "optimizer: expected a flatnet_xp optimizer"),
        ({"shuffle": "yes"}, TypeError, "shuffle: expected a bool"),
        ({"patience": 0}, ValueError, "patience: expected an integer >= 1"),
        ({"min_delta": -1.0}, ValueError, "min_delta: expected a finite number"),
        ({"callbacks": [3]}, TypeError, "callbacks: expected a callable"),
        (
            {"validation_data": np.zeros((3, 3))},
            TypeError,
            r"validation_data: expected \(X_val, Y_val\) or \(X_val, Y_val, sample_weight_val\)",
        ),
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
    data = net.flat_params.dataset(X, Y, "mse")
    x, _, _ = data.batch(slice(0, 4))
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


@pytest.mark.parametrize(
    "make",
    [
        lambda: fx.SGD(np.float32(1e-3), momentum=np.float64(0.9), weight_decay=np.float32(1e-4)),
        lambda: fx.Adam(np.float32(1e-3), betas=(np.float32(0.9), np.float64(0.999)), eps=np.float32(1e-8)),
        lambda: fx.RMSprop(lr=np.float16(0.01), alpha=np.float32(0.9)),
        lambda: fx.SGD(lr=np.int64(1)),
        lambda: fx.SGD(fx.Cosine(np.float32(0.1), total_steps=np.int64(10), min_lr=np.float32(0.0))),
        lambda: fx.LBFGS(max_iter=np.int64(10), tol=np.float32(1e-4)),
    ],
)
def test_hyperparameters_accept_numpy_scalars(make):
    opt = make()
    net, X, Y = net_and_data()
    net.fit(X, Y, epochs=1, optimizer=opt, progress=False)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_unsigned_integer_class_labels_are_accepted(xp, dtype):
    net = fx.FlatMLP([3, 4, 3], ["tanh", "identity"], backend=xp, dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(6, 3))
    labels = np.array([0, 1, 2, 2, 1, 0], dtype=dtype)
    a = net.loss_and_grad(X, labels, loss="cross_entropy")
    b = net.loss_and_grad(X, labels.astype(np.int64), loss="cross_entropy")
    assert a[0] == b[0]


def test_torch_tensors_that_require_grad_are_used_as_data():
    torch = pytest.importorskip("torch")
    net = fx.FlatMLP([3, 4, 2], ["tanh", "identity"], backend="torch", dtype="float64", seed=0)
    X = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    net.fit(X, Y, epochs=2, batch_size=4, optimizer=fx.SGD(0.1), progress=False)
    assert net.predict(X).shape == (8, 2) and X.grad is None and X.requires_grad


def test_torch_sparse_tensors_are_refused_with_how_to_convert():
    torch = pytest.importorskip("torch")
    net, _, Y = net_and_data()
    X = torch.eye(10, 3, dtype=torch.float64).to_sparse()
    with pytest.raises(TypeError, match=r"X: torch sparse tensors .* are not supported; pass X.to_dense\(\)"):
        net.fit(X, Y, progress=False)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_scipy_sparse_features_train_like_dense_ones(xp, fmt):
    sparse = pytest.importorskip("scipy.sparse")
    net, X, Y = net_and_data(xp)
    X[np.abs(X) < 0.8] = 0.0
    dense_net = net.copy()
    Xs = sparse.random(1, 1).asformat(fmt).__class__(X)
    kw = dict(epochs=2, batch_size=3, optimizer=fx.SGD(lr=0.1), seed=1, progress=False)
    net.fit(Xs, Y, **kw)
    dense_net.fit(X, Y, **kw)
    np.testing.assert_allclose(fx.to_numpy(net.params), fx.to_numpy(dense_net.params), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fx.to_numpy(net.predict(Xs)), fx.to_numpy(net.predict(X)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (np.ones(9), ValueError, r"sample_weight: expected 10 weights \(one per sample\)"),
        (-np.ones(10), ValueError, "sample_weight: expected finite non-negative weights"),
        (np.full(10, np.nan), ValueError, "sample_weight: expected finite non-negative weights"),
        (np.zeros(10), ValueError, "sample_weight: expected at least one positive weight"),
        (np.ones((10, 1)), ValueError, "sample_weight: expected a 1-D array"),
        ("heavy", TypeError, "sample_weight: expected a numeric array"),
    ],
)
def test_bad_sample_weights(weights, error, match):
    net, X, Y = net_and_data()
    with pytest.raises(error, match=match):
        net.fit(X, Y, sample_weight=weights, progress=False)


@pytest.mark.parametrize(
    ("loss", "Y", "match"),
    [
        ("poisson", -np.ones((10, 2)), r"Y: expected non-negative targets for loss='poisson', found -1.0"),
        ("bce", np.full((10, 2), 2.0), r"Y: expected targets in \[0, 1\] for loss='bce', found 2.0"),
    ],
)
def test_targets_outside_a_losss_range_are_refused(loss, Y, match):
    net, X, _ = net_and_data()
    with pytest.raises(ValueError, match=match):
        net.fit(X, Y, loss=loss, progress=False)


def test_integer_labels_with_the_default_mse_loss_say_to_use_cross_entropy():
    net, X, _ = net_and_data()
    with pytest.raises(ValueError, match=r"looks like class labels: use loss='cross_entropy'.*FlatMLPClassifier"):
        net.fit(X, np.arange(10) % 2, progress=False)


def test_a_single_one_dimensional_sample_says_how_to_reshape():
    net, X, _ = net_and_data()
    with pytest.raises(ValueError, match=r"for one sample pass X.reshape\(1, -1\)"):
        net.predict(X[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e300])
def test_predict_refuses_inputs_it_cannot_represent(bad):
    net = fx.FlatMLP([3, 2], seed=0)
    X = np.ones((4, 3))
    X[2, 1] = bad
    with pytest.raises(ValueError, match="X: "):
        net.predict(X)


def test_r2_score_of_a_single_sample_is_nan_as_in_scikit_learn():
    net = fx.FlatMLP([3, 2], seed=0)
    assert np.isnan(net.score(np.ones((1, 3)), np.ones((1, 2))))


@pytest.mark.parametrize("method", ["evaluate", "score"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_evaluate_and_score_refuse_inputs_that_would_give_a_wrong_answer(method, bad):
    net = fx.FlatMLP([2, 3, 2], dtype="float64", seed=0)
    X = np.ones((3, 2))
    X[1, 0] = bad
    with pytest.raises(ValueError, match="X: "):
        getattr(net, method)(X, np.array([0, 1, 1]), loss="cross_entropy")


def test_second_fit_does_not_count_optimizer_state_it_already_has(monkeypatch):
    from flatnet_xp import _memory

    net = fx.FlatMLP([2, 2_000_000, 2], ["relu", "identity"], seed=0)
    X, Y = np.ones((4, 2)), np.ones((4, 2))
    opt = fx.Adam(lr=1e-3)
    net.fit(X, Y, epochs=1, optimizer=opt, progress=False)  # allocates Adam's two buffers
    param_bytes = net.layout.n_params * 4
    monkeypatch.setattr(_memory, "available_memory", lambda: int(5.5 * param_bytes))  # 3 copies + activations fit
    net.fit(X, Y, epochs=1, optimizer=opt, progress=False)  # needs the snapshot only: 3 copies
    with pytest.raises(ValueError, match="bytes"):
        net.fit(X, Y, epochs=1, optimizer=fx.Adam(lr=1e-3), progress=False)  # a new Adam: 5 copies
