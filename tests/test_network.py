"""FlatMLP on every backend: one buffer, zero-copy views, forward pass and predictions."""

from __future__ import annotations

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy
from tests.conftest import assert_close


def reference_forward(w, b, sizes, acts, X):
    """Plain NumPy forward pass written from the seed's index formula (loops over layers only)."""
    fns = {
        "sigmoid": lambda s: 1 / (1 + np.exp(-s)),
        "tanh": np.tanh,
        "relu": lambda s: np.maximum(s, 0),
        "leaky_relu": lambda s: np.where(s > 0, s, 0.01 * s),
        "identity": lambda s: s,
    }
    a, wo, bo = X, 0, 0
    for k in range(len(sizes) - 1):
        n_in, n_out = sizes[k], sizes[k + 1]
        W = np.array([[w[wo + i + n_in * j] for i in range(n_in)] for j in range(n_out)])
        a = fns[acts[k]](a @ W.T + b[bo : bo + n_out])
        wo, bo = wo + n_in * n_out, bo + n_out
    return a


def skip_if_immutable(xp: str) -> None:
    if xp == "jax":
        pytest.skip("JAX arrays are immutable: w, b and the layer views are read-only (tested below)")


def test_w_and_b_are_views_of_one_buffer(xp):
    skip_if_immutable(xp)
    net = fx.FlatMLP([3, 4, 2], backend=xp, dtype="float64", seed=0)
    net.w[0] = 7.0
    net.b[-1] = -3.0
    params = to_numpy(net.params)
    assert params[0] == 7.0 and params[-1] == -3.0
    assert net.params.shape == (net.layout.w_len + net.layout.b_len,)


def test_weight_view_aliases_w_at_the_seed_index(xp):
    skip_if_immutable(xp)
    net = fx.FlatMLP([3, 4, 2], backend=xp, dtype="float64", seed=0)
    W1 = net.weight(1)
    assert tuple(W1.shape) == (2, 4)
    W1[1, 3] = 42.0
    assert float(net.w[net.layout.weight_index(1, 1, 3)]) == 42.0
    w = to_numpy(net.w)
    assert_close(net.weight(0), w[:12].reshape(4, 3))
    assert_close(net.weight(1), w[12:].reshape(2, 4))


def test_bias_view_aliases_b(xp):
    skip_if_immutable(xp)
    net = fx.FlatMLP([3, 4, 2], backend=xp, dtype="float64", seed=0)
    net.bias(1)[0] = 5.0
    assert float(net.b[4]) == 5.0


def test_views_survive_parameter_updates(xp):
    net = fx.FlatMLP([3, 4, 2], backend=xp, dtype="float64", seed=0)
    w, b = net.get_params()
    net.set_params(w + 1.0, b - 1.0)
    assert_close(net.weight(0), (w + 1.0)[:12].reshape(4, 3))
    assert_close(net.bias(0), (b - 1.0)[:4])


@pytest.mark.parametrize("acts", [["sigmoid", "sigmoid"], ["tanh", "identity"], ["relu", "leaky_relu"]])
def test_forward_matches_the_seed_formula(xp, acts, rng):
    sizes = [4, 5, 3]
    net = fx.FlatMLP(sizes, activations=acts, backend=xp, dtype="float64", seed=3)
    X = rng.normal(size=(7, 4))
    w, b = net.get_params()
    assert_close(net.forward(X), reference_forward(w, b, sizes, acts, X), rtol=1e-12, atol=1e-15)


def test_forward_accepts_backend_arrays(xp, rng):
    net = fx.FlatMLP([4, 3], backend=xp, dtype="float64", seed=0)
    X = rng.normal(size=(5, 4))
    assert_close(net.forward(net.flat_params.backend.asarray(X)), net.forward(X))


def test_same_seed_gives_same_initial_weights_on_every_backend(xp):
    reference = fx.FlatMLP([6, 5, 4], activations=["relu", "identity"], dtype="float64", seed=11)
    net = fx.FlatMLP([6, 5, 4], activations=["relu", "identity"], backend=xp, dtype="float64", seed=11)
    assert_close(net.params, reference.params, rtol=0)


@pytest.mark.parametrize(("act", "fan"), [("tanh", 10 + 6), ("relu", 10)])
def test_initialisation_is_glorot_or_he_uniform(act, fan):
    net = fx.FlatMLP([10, 6], activations=act, dtype="float64", seed=0)
    w, b = net.get_params()
    assert np.all(np.abs(w) <= np.sqrt(6 / fan)) and np.abs(w).max() > 0.8 * np.sqrt(6 / fan)
    assert np.all(b == 0)


def test_predict_in_chunks_equals_forward(xp, rng):
    net = fx.FlatMLP([4, 6, 3], activations=["tanh", "identity"], backend=xp, dtype="float64", seed=0)
    X = rng.normal(size=(23, 4))
    assert_close(net.predict(X, batch_size=5), net.forward(X))


def test_predict_proba_is_softmax_of_outputs(xp, rng):
    net = fx.FlatMLP([4, 3], activations="identity", backend=xp, dtype="float64", seed=0)
    X = rng.normal(size=(6, 4))
    z = to_numpy(net.forward(X))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    assert_close(net.predict_proba(X), p / p.sum(axis=1, keepdims=True))
    assert_close(net.predict_class(X), z.argmax(axis=1), rtol=0)


def test_single_output_probabilities_are_sigmoid(xp, rng):
    net = fx.FlatMLP([4, 1], activations="identity", backend=xp, dtype="float64", seed=0)
    X = rng.normal(size=(9, 4))
    z = to_numpy(net.forward(X))
    assert_close(net.predict_proba(X), 1 / (1 + np.exp(-z)))
    assert_close(net.predict_class(X), (z[:, 0] > 0).astype(np.int64), rtol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_never_overflows(xp, dtype):
    net = fx.FlatMLP([1, 1], activations="sigmoid", backend=xp, dtype=dtype, seed=0)
    net.set_params(np.ones(1), np.zeros(1))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = to_numpy(net.forward(np.array([[-1000.0], [-30.0], [0.0], [30.0], [1000.0]])))
    assert out[0, 0] == 0.0 and out[4, 0] == 1.0 and out[2, 0] == 0.5
    np.testing.assert_allclose(out[1, 0], 1 / (1 + np.exp(30.0)), rtol=1e-6)


def test_float32_is_the_default_dtype():
    net = fx.FlatMLP([2, 2])
    assert net.dtype_name == "float32" and to_numpy(net.params).dtype == np.float32


def test_set_params_copies_and_does_not_keep_the_input(xp):
    net = fx.FlatMLP([2, 2], backend=xp, dtype="float64", seed=0)
    w, b = np.arange(4.0), np.arange(2.0)
    net.set_params(w, b)
    w[0] = 99.0
    assert float(net.w[0]) == 0.0


def test_jax_views_are_read_only_slices_at_the_seed_index():
    pytest.importorskip("jax")
    net = fx.FlatMLP([3, 4, 2], backend="jax", dtype="float64", seed=0)
    w = to_numpy(net.w)
    assert_close(net.weight(1), w[12:].reshape(2, 4), rtol=0)
    assert float(net.weight(1)[1, 3]) == w[net.layout.weight_index(1, 1, 3)]
    assert_close(net.bias(0), to_numpy(net.b)[:4], rtol=0)
    with pytest.raises(TypeError, match="immutable"):
        net.w[0] = 7.0
    net.set_params(w + 1.0, to_numpy(net.b))
    assert_close(net.weight(0), (w + 1.0)[:12].reshape(4, 3), rtol=0)


def test_jax_float64_never_changes_the_global_jax_configuration():
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    net = fx.FlatMLP([3, 2], "tanh", backend="jax", dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(9, 3))
    net.fit(X, X[:, :2], epochs=2, batch_size=4, optimizer=fx.SGD(0.1), progress=False)
    assert str(net.predict(X).dtype) == "float64" and str(net.params.dtype) == "float64"
    assert jax.config.jax_enable_x64 == before


def test_repr_names_the_configuration():
    assert repr(fx.FlatMLP([2, 3], "relu")) == (
        "FlatMLP([2, 3], activations=['relu'], backend='numpy', dtype='float32', n_params=9)"
    )


def test_summary_shows_every_layer_with_its_offsets():
    net = fx.FlatMLP([4, 8, 3], ["relu", "identity"], dtype="float64", seed=0)
    text = net.summary()
    lines = text.splitlines()
    assert lines[0].split() == [
        "layer",
        "shape",
        "(out,",
        "in)",
        "activation",
        "params",
        "w[start:stop]",
        "b[start:stop]",
    ]
    assert lines[2].split() == ["0", "(8,", "4)", "relu", "40", "w[0:32]", "b[0:8]"]
    assert lines[3].split() == ["1", "(3,", "8)", "identity", "27", "w[32:56]", "b[8:11]"]
    assert "total: 67 parameters (w_len 56 + b_len 11), 536 bytes of float64" in lines[-1]


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"), "single"])
def test_dtype_accepts_what_numpy_users_write_for_float32(dtype):
    assert fx.FlatMLP([2, 2], dtype=dtype).dtype_name == "float32"


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64"), float, "double"])
def test_dtype_accepts_what_numpy_users_write_for_float64(dtype):
    assert fx.FlatMLP([2, 2], dtype=dtype).dtype_name == "float64"


def test_dtype_accepts_backend_dtype_objects(xp):
    namespace = fx.FlatMLP([2, 2], backend=xp).xp
    assert fx.FlatMLP([2, 2], backend=xp, dtype=namespace.float64).dtype_name == "float64"


def test_torch_dtypes_are_accepted():
    torch = pytest.importorskip("torch")
    assert fx.FlatMLP([2, 2], dtype=torch.float64).dtype_name == "float64"
    assert fx.FlatMLP.load  # load takes the same dtype forms (tested in test_persistence)


@pytest.mark.parametrize(
    ("init", "weight_bound", "bias_bound"),
    [
        ("glorot", np.sqrt(6 / 16), 0.0),
        ("he", np.sqrt(6 / 10), 0.0),
        ("torch", 1 / np.sqrt(10), 1 / np.sqrt(10)),
        ("sklearn", np.sqrt(6 / 16), np.sqrt(6 / 16)),
    ],
)
def test_initialisation_schemes_draw_within_their_bounds(init, weight_bound, bias_bound):
    net = fx.FlatMLP([10, 6], activations="relu", dtype="float64", seed=0, init=init)
    w, b = net.get_params()
    assert np.all(np.abs(w) <= weight_bound) and np.abs(w).max() > 0.8 * weight_bound
    assert np.all(np.abs(b) <= bias_bound) and (bias_bound == 0 or np.abs(b).max() > 0.5 * bias_bound)


def test_sklearn_initialisation_equals_scikit_learns_for_the_same_random_state():
    sklearn_mlp = pytest.importorskip("sklearn.neural_network")
    y = np.random.default_rng(1).normal(size=20)
    ref = sklearn_mlp.MLPRegressor(hidden_layer_sizes=(7,), activation="logistic", max_iter=1, random_state=3)
    ref._random_state = np.random.RandomState(3)
    ref._initialize(y[:, None], [5, 7, 1], np.float64)
    net = fx.FlatMLP([5, 7, 1], ["sigmoid", "identity"], dtype="float64", seed=np.random.RandomState(3), init="sklearn")
    for k in range(2):
        assert_close(net.weight(k), ref.coefs_[k].T, rtol=0)
        assert_close(net.bias(k), ref.intercepts_[k], rtol=0)


def test_initial_weights_are_drawn_in_chunks_with_the_same_values(monkeypatch):
    import flatnet_xp.init

    reference = fx.FlatMLP([300, 50, 7], ["relu", "identity"], dtype="float64", seed=5)
    monkeypatch.setattr(flatnet_xp.init, "CHUNK", 1000)  # many chunks
    chunked = fx.FlatMLP([300, 50, 7], ["relu", "identity"], dtype="float64", seed=5)
    np.testing.assert_array_equal(chunked.params, reference.params)


def test_building_a_large_network_does_not_copy_its_parameters():
    import tracemalloc

    tracemalloc.start()
    net = fx.FlatMLP([2000, 2000, 1000], ["relu", "identity"], dtype="float32", seed=0)  # 6M params, 24 MB
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < net.params.nbytes + 4 * 2**20  # the buffer plus one 2 MB float64 chunk and its cast


def test_unallocatable_layer_sizes_name_the_bytes_needed_at_once():
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"layer_sizes: \[1000000, 1000000, 1000000\] needs .* bytes"):
        fx.FlatMLP([1_000_000, 1_000_000, 1_000_000])
    assert time.perf_counter() - t0 < 1.0
