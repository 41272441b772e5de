"""Regression tests for the trust defects a careful user met (one network state, one owner).

Each test names the behaviour a user relies on; the defect it once broke is in its docstring.
The scikit-learn estimators' defects live in ``test_sklearn.py``, ``fx.Preprocessing``'s in
``test_preprocessing.py``.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
import sys
import warnings

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4))
Y = RNG.normal(size=(64, 2))


def _trained(width: int, optimizer: fx.Optimizer, backend: str = "numpy") -> np.ndarray:
    net = fx.FlatMLP([4, width, 2], seed=1, dtype="float64", backend=backend)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer=optimizer, seed=0)
    return to_numpy(net.params)


# ----------------------------------------------------------------- optimizers reused across networks
@pytest.mark.parametrize("make", [lambda: fx.Adam(1e-2), lambda: fx.SGD(1e-2, momentum=0.9), lambda: fx.RMSprop(1e-3)])
@pytest.mark.parametrize("widths", [(8, 8), (8, 5), (5, 8, 8)])
def test_an_optimizer_reused_on_new_networks_starts_afresh_on_each(make, widths):
    """Defect 2: state was found by ``id(net)``, which Python reuses for networks built in a loop."""
    shared = make()
    for width in widths:
        assert np.array_equal(_trained(width, shared), _trained(width, make()))


def test_an_optimizer_reused_on_the_same_network_keeps_its_state():
    """The other side of defect 2: a second fit of the same network continues the moments."""
    opt = fx.Adam(1e-2)
    net = fx.FlatMLP([4, 8, 2], seed=1, dtype="float64")
    net.fit(X, Y, epochs=1, batch_size=8, optimizer=opt, seed=0)
    t = opt.t
    net.fit(X, Y, epochs=1, batch_size=8, optimizer=opt, seed=0)
    assert opt.t == 2 * t


# ----------------------------------------------------------------- L-BFGS divergence
def test_lbfgs_on_a_loss_that_turns_non_finite_raises_and_restores_the_weights():
    """Defect 3: L-BFGS returned normally (only ``message_ == "ABNORMAL: "``)."""
    net = fx.FlatMLP([4, 3, 2], seed=1, dtype="float64")
    before = to_numpy(net.params).copy()
    with pytest.raises(fx.DivergenceError, match="non-finite"):
        net.fit(X * 1e200, Y * 1e200, optimizer=fx.LBFGS(), epochs=5)
    assert np.array_equal(to_numpy(net.params), before)


# ----------------------------------------------------------------- cross-entropy targets
@pytest.mark.parametrize("row", [[-1.0, 2.0], [0.5, 0.6], [1.5, -0.5], [0.2, 0.2]])
@pytest.mark.parametrize("method", ["fit", "evaluate", "score"])
def test_cross_entropy_refuses_target_rows_that_are_not_probabilities(row, method):
    """Defect 4: rows like ``[-1, 2]`` gave a negative loss and ``score == 1.0``."""
    net = fx.FlatMLP([4, 3, 2], activations=["relu", "identity"], seed=1)
    Yp = np.tile(row, (64, 1))
    kwargs = {"epochs": 1} if method == "fit" else {}
    with pytest.raises(ValueError, match="probability rows"):
        getattr(net, method)(X, Yp, loss="cross_entropy", **kwargs)


def test_cross_entropy_accepts_soft_probability_targets():
    net = fx.FlatMLP([4, 3, 2], activations=["relu", "identity"], seed=1)
    net.fit(X, np.tile([0.25, 0.75], (64, 1)), loss="cross_entropy", epochs=1)


# ----------------------------------------------------------------- overflowing forward passes
@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_class", "score"])
def test_finite_inputs_whose_outputs_overflow_raise_instead_of_answering_nan(xp, method):
    """Defect 6: float32 inputs near 3e38 gave NaN probabilities, class 0 and score 0.0 silently."""
    net = fx.FlatMLP([4, 3, 2], activations=["relu", "identity"], seed=1, backend=xp)
    big = np.full((3, 4), 3e38, dtype=np.float32)
    args = (big, np.array([0, 1, 0])) if method == "score" else (big,)
    kwargs = {"loss": "cross_entropy"} if method == "score" else {}
    with pytest.raises(ValueError, match="overflow float32"):
        getattr(net, method)(*args, **kwargs)


@pytest.mark.parametrize("method", ["predict_proba", "predict_class"])
def test_probabilities_and_classes_agree_with_the_outputs(xp, method):
    net = fx.FlatMLP([4, 6, 3], activations=["tanh", "identity"], seed=2, backend=xp, dtype="float64")
    z = to_numpy(net.predict(X))
    got = to_numpy(getattr(net, method)(X))
    if method == "predict_class":
        np.testing.assert_array_equal(got, np.argmax(z, axis=1))
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-12)


# ----------------------------------------------------------------- fork safety
def _fit_again(net: fx.FlatMLP, opt: fx.Optimizer, x: np.ndarray, y: np.ndarray) -> None:
    net.fit(x, y, epochs=1, batch_size=len(x), optimizer=opt)
    sys.exit(0 if net.flat_params.all_finite() else 3)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_child_reusing_a_parallel_optimizer_trains_instead_of_hanging():
    """Defect 7: a NumPy network of >= 2**20 parameters updates in a thread pool; a forked child
    inherited the parent's (dead) pool and hung forever."""
    net = fx.FlatMLP([1024, 1024, 2], seed=0)
    assert net.layout.n_params >= 1 << 20
    x = RNG.normal(size=(8, 1024)).astype(np.float32)
    y = RNG.normal(size=(8, 2)).astype(np.float32)
    opt = fx.Adam(1e-3)
    net.fit(x, y, epochs=1, batch_size=8, optimizer=opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX, when imported, warns that fork() and threads don't mix
        child = multiprocessing.get_context("fork").Process(target=_fit_again, args=(net, opt, x, y))
        child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0


# ----------------------------------------------------------------- JAX global configuration
@needs_jax
@pytest.mark.parametrize("make", [lambda: fx.Adam(1e-2), lambda: fx.AdamW(1e-2), lambda: fx.SGD(1e-2, momentum=0.9)])
def test_jax_float32_training_ignores_a_global_x64_setting(make):
    """Defect 8: with ``JAX_ENABLE_X64=1`` a float32 network trained with Adam failed in lax.scan."""
    import jax

    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)

    def run() -> tuple[np.ndarray, np.ndarray]:
        net = fx.FlatMLP([4, 8, 2], seed=1, backend="jax")
        net.fit(X32, Y32, epochs=2, batch_size=8, optimizer=make(), seed=0)
        return to_numpy(net.params), to_numpy(net.predict(X32))

    plain = run()
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        under_x64 = run()
    finally:
        jax.config.update("jax_enable_x64", previous)
    for a, b in zip(plain, under_x64, strict=True):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- narrow torch tensors
@needs_torch
@pytest.mark.parametrize("backend", ["numpy", pytest.param("jax", marks=needs_jax)])
@pytest.mark.parametrize("torch_dtype", ["bfloat16", "float16"])
def test_narrow_torch_tensors_are_widened_exactly(backend, torch_dtype):
    """Defect 9: bfloat16 tensors as X failed with torch's internal errors at the first batch."""
    import torch

    xt = torch.randn(16, 4).to(getattr(torch, torch_dtype))
    yt = torch.randn(16, 2).to(getattr(torch, torch_dtype))
    net = fx.FlatMLP([4, 3, 2], seed=1, backend=backend)
    net.fit(xt, yt, epochs=1, batch_size=4)
    widened = xt.to(torch.float32).numpy()
    np.testing.assert_array_equal(to_numpy(net.predict(xt)), to_numpy(net.predict(widened)))


@needs_torch
def test_from_torch_widens_a_bfloat16_module_exactly():
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).to(torch.bfloat16)
    net = fx.FlatMLP.from_torch(module)
    assert net.dtype_name == "float32"
    np.testing.assert_array_equal(to_numpy(net.weight(0)), module[0].weight.detach().float().numpy())


@needs_torch
def test_from_torch_refuses_a_meta_device_module_naming_the_parameter():
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(4, 3, device="meta"))
    with pytest.raises(ValueError, match=r"module\[0\]\.weight is on the meta device"):
        fx.FlatMLP.from_torch(module)


@needs_torch
def test_a_meta_device_tensor_as_x_is_refused_at_the_boundary():
    import torch

    net = fx.FlatMLP([4, 3, 2], seed=1)
    with pytest.raises(ValueError, match="meta device"):
        net.predict(torch.empty(5, 4, device="meta"))


# ----------------------------------------------------------------- JAX inference on many row counts
@needs_jax
@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_class"])
def test_jax_inference_on_many_row_counts_compiles_a_few_programs(method):
    """Defect 10: JAX ``predict`` compiled once per row count (300 row counts: 55 s, 780 MB)."""
    from flatnet_xp.params import _PROGRAMS

    net = fx.FlatMLP([4, 5, 3], activations=["relu", "identity"], seed=3, backend="jax")
    for n in range(1, 129):
        getattr(net, method)(RNG.normal(size=(n, 4)))
    key = next(k for k in _PROGRAMS if k[0] == net.flat_params.spec and k[1] is None)
    assert _PROGRAMS[key]._cache_size() <= 5  # one program per row bucket: 8, 16, 32, 64, 128


@needs_jax
@pytest.mark.parametrize("n", [1, 7, 9, 100])
def test_jax_predictions_on_padded_row_buckets_equal_numpy_ones(n):
    net = fx.FlatMLP([4, 5, 3], activations=["relu", "identity"], seed=3, dtype="float64")
    x = RNG.normal(size=(n, 4))
    np.testing.assert_allclose(to_numpy(net.to("jax").predict(x)), net.predict(x), rtol=1e-12)
    np.testing.assert_array_equal(to_numpy(net.to("jax").predict_class(x)), net.predict_class(x))


# ----------------------------------------------------------------- fit from a callback
def test_fit_from_inside_its_own_callback_says_so():
    """Defect 12: the message said "already running ... in another thread" for the same thread."""
    net = fx.FlatMLP([4, 3, 2], seed=1)

    def nested(n: fx.FlatMLP, history: fx.History) -> None:
        n.fit(X, Y, epochs=1)

    with pytest.raises(RuntimeError, match="from inside this network's own fit"):
        net.fit(X, Y, epochs=1, callbacks=nested)


def test_the_network_trains_again_after_a_callback_refused_a_nested_fit():
    net = fx.FlatMLP([4, 3, 2], seed=1)
    with pytest.raises(RuntimeError):
        net.fit(X, Y, epochs=1, callbacks=lambda n, h: n.fit(X, Y, epochs=1))
    assert net.fit(X, Y, epochs=1).epochs == 1


# ----------------------------------------------------------------- found by a stranger's pass over the new structure
def _plateau_run(opt: fx.Optimizer) -> tuple[float, np.ndarray]:
    net = fx.FlatMLP([4, 8, 2], seed=1, dtype="float64")
    # validation targets that training moves away from: the validation loss rises, the rate falls
    net.fit(X, Y, epochs=6, batch_size=16, optimizer=opt, seed=0, validation_data=(X[:16], -3 * Y[:16]))
    return opt.learning_rate, to_numpy(net.params)


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: fx.Warmup(s, 3)], ids=["plain", "in-warmup"])
def test_a_plateau_schedule_starts_afresh_on_each_new_network(wrap):
    shared = fx.SGD(wrap(fx.ReduceOnPlateau(0.1, factor=0.5, patience=0)))
    first = _plateau_run(shared)
    second = _plateau_run(shared)
    assert first[0] == second[0] < 0.1
    np.testing.assert_array_equal(first[1], second[1])


def test_a_plateau_schedule_inside_a_warmup_reduces_the_rate():
    plain = fx.ReduceOnPlateau(0.1, factor=0.5, patience=0)
    warm = fx.ReduceOnPlateau(0.1, factor=0.5, patience=0)
    _plateau_run(fx.SGD(plain))
    _plateau_run(fx.SGD(fx.Warmup(warm, 1)))
    assert plain.current < 0.1 and warm.current < 0.1 and warm.best < math.inf


def test_a_plateau_schedule_inside_a_warmup_is_checkpointed_and_resumed(tmp_path):
    def run(epochs: int, **kw: object) -> tuple[fx.FlatMLP, fx.ReduceOnPlateau]:
        plateau = fx.ReduceOnPlateau(0.1, factor=0.5, patience=0)
        net = fx.FlatMLP([4, 8, 2], seed=1, dtype="float64")
        net.fit(X, Y, epochs=epochs, batch_size=16, optimizer=fx.SGD(fx.Warmup(plateau, 2)), seed=0,
                validation_data=(X[:16], -3 * Y[:16]), **kw)  # fmt: skip
        return net, plateau

    whole, whole_plateau = run(6)
    run(3, checkpoint=tmp_path / "c.ckpt")
    resumed, resumed_plateau = run(6, checkpoint=tmp_path / "c.ckpt", resume=tmp_path / "c.ckpt")
    np.testing.assert_array_equal(to_numpy(resumed.params), to_numpy(whole.params))
    assert resumed_plateau.state() == whole_plateau.state()


def test_one_optimizer_trains_networks_of_different_widths_in_parallel_threads_as_alone():
    import threading

    def make(width: int) -> fx.FlatMLP:
        return fx.FlatMLP([4, width, 2], seed=1, dtype="float64")

    def fit(net: fx.FlatMLP, opt: fx.Optimizer) -> None:
        for _ in range(20):
            net.fit(X, Y, epochs=1, batch_size=4, optimizer=opt, seed=0)

    shared = fx.AdamW(1e-2, weight_decay=0.5)
    nets = [make(3), make(64)]
    threads = [threading.Thread(target=fit, args=(n, shared)) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for net, width in zip(nets, (3, 64), strict=True):
        alone = make(width)
        fit(alone, fx.AdamW(1e-2, weight_decay=0.5))
        np.testing.assert_array_equal(to_numpy(net.params), to_numpy(alone.params))


@pytest.mark.parametrize("copy", ["pickle", "deepcopy"])
def test_a_copied_optimizer_continues_only_on_its_own_network(copy):
    import copy as copying
    import pickle

    opt = fx.Adam(1e-2)
    net = fx.FlatMLP([4, 8, 2], seed=1, dtype="float64")
    net.fit(X, Y, epochs=1, batch_size=16, optimizer=opt, seed=0)
    if copy == "pickle":
        net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
    else:
        net2, opt2 = copying.deepcopy((net, opt))
    fresh = fx.FlatMLP([4, 8, 2], seed=2, dtype="float64")
    fresh.fit(X, Y, epochs=1, batch_size=16, optimizer=opt2, seed=0)
    assert opt2.t == 4  # afresh on a network it never updated, whatever its size
    net2.fit(X, Y, epochs=1, batch_size=16, optimizer=opt2, seed=0)
    net.fit(X, Y, epochs=1, batch_size=16, optimizer=opt, seed=0)
    assert opt2.t == opt.t == 8  # continued on its own network
    np.testing.assert_array_equal(to_numpy(net2.params), to_numpy(net.params))


@needs_jax
def test_float64_device_data_on_jax_trains_without_truncation_warnings():
    import jax

    with jax.enable_x64(True):
        xj, yj = jax.numpy.asarray(X), jax.numpy.asarray(Y)
    net = fx.FlatMLP([4, 8, 2], seed=1, dtype="float64", backend="jax")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(xj, yj, epochs=1, batch_size=16, validation_data=(xj, yj), sample_weight=np.ones(64))
        net.evaluate(xj, yj)


@pytest.mark.parametrize("where", ["missing.ckpt", "no/folder/c.ckpt"])
def test_resume_from_a_missing_checkpoint_names_the_argument(tmp_path, where):
    net = fx.FlatMLP([4, 3, 2], seed=1)
    with pytest.raises(ValueError, match="resume: no checkpoint at"):
        net.fit(X, Y, epochs=1, resume=tmp_path / where)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (np.zeros(25), ValueError, "params: expected a 1-D array of length 21"),
        (np.zeros(5), ValueError, "params: expected a 1-D array of length 21"),
        (3.0, ValueError, "params: expected a 1-D array"),
        (None, TypeError, "params: expected a numeric array"),
        (np.zeros((3, 7)), ValueError, "params: expected a 1-D array"),
    ],
)
def test_assigning_bad_params_names_params(value, error, message):
    net = fx.FlatMLP([3, 4, 1], ["tanh", "identity"], seed=0)
    before = to_numpy(net.params).copy()
    with pytest.raises(error, match=message):
        net.params = value
    np.testing.assert_array_equal(to_numpy(net.params), before)


@needs_torch
def test_read_only_numpy_data_on_torch_raises_no_warning():
    net = fx.FlatMLP([4, 3, 2], seed=1, backend="torch", dtype="float64")
    x = X.copy()
    x.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(x, Y, epochs=1, batch_size=16)
        net.predict(x)
