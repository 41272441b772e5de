"""Full-batch L-BFGS on the flat parameter vector (scipy's L-BFGS-B)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import flatnet_xp as fx
import flatnet_xp.engines.lbfgs as lbfgs
from flatnet_xp.backends import to_numpy
from tests.conftest import assert_close

pytest.importorskip("scipy")


def problem(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.column_stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], np.cos(X[:, 1])])


def net(backend: str = "numpy", dtype: str = "float64") -> fx.FlatMLP:
    return fx.FlatMLP([3, 16, 2], ["tanh", "identity"], backend=backend, dtype=dtype, seed=0)


def test_lbfgs_fits_a_smooth_regression_far_better_than_its_start(xp):
    X, Y = problem()
    model = net(xp)
    start = model.evaluate(X, Y)
    hist = model.fit(X, Y, optimizer=fx.LBFGS(max_iter=200), progress=False)
    assert model.evaluate(X, Y) < 0.02 * start
    assert len(hist.loss) >= 10 and hist.loss[-1] < hist.loss[0]
    assert model.score(X, Y) > 0.95


def test_lbfgs_agrees_across_backends(xp):
    X, Y = problem()
    ref, other = net(), net(xp)
    ref.fit(X, Y, optimizer=fx.LBFGS(max_iter=30), progress=False)
    other.fit(X, Y, optimizer=fx.LBFGS(max_iter=30), progress=False)
    assert_close(other.params, ref.params, rtol=1e-6, atol=1e-8)


def test_the_objective_hands_scipy_the_gradient_buffer_itself_on_numpy_float64():
    X, Y = problem()
    model = net()
    data = model.flat_params.dataset(X, Y, "mse")
    objective = lbfgs._Objective(model.flat_params, data, fx.LOSSES["mse"], 0.0)
    value, grad = objective(np.asarray(model.params, dtype=np.float64).copy())
    # no packing: the flat gradient buffer itself is scipy's vector
    assert grad.ctypes.data == model.grads.ctypes.data and grad.shape == model.grads.shape
    assert value == pytest.approx(model.evaluate(X, Y), rel=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_the_objective_is_consistent_with_its_gradient(weight_decay):
    X, Y = problem(40)
    model = net()
    objective = lbfgs._Objective(
        model.flat_params,
        model.flat_params.dataset(X, Y, "mse", sample_weight=np.arange(40.0)),
        fx.LOSSES["mse"],
        weight_decay,
    )
    x0 = np.asarray(model.params, dtype=np.float64).copy()
    _, grad = objective(x0.copy())
    grad = np.array(grad)
    eps, rng = 1e-6, np.random.default_rng(1)
    for i in rng.choice(x0.size, size=12, replace=False):
        e = np.zeros_like(x0)
        e[i] = eps
        numeric = (objective(x0 + e)[0] - objective(x0 - e)[0]) / (2 * eps)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_large_data_is_evaluated_in_chunks_with_the_same_result(monkeypatch):
    X, Y = problem(100)
    whole = net()
    whole.fit(X, Y, optimizer=fx.LBFGS(max_iter=15), progress=False)
    monkeypatch.setattr(lbfgs, "CHUNK_ROWS", 7)
    chunked = net()
    chunked.fit(X, Y, optimizer=fx.LBFGS(max_iter=15), progress=False)
    assert_close(chunked.params, whole.params, rtol=1e-8, atol=1e-10)


def test_max_iter_and_max_fun_limit_the_run():
    X, Y = problem()
    opt = fx.LBFGS(max_iter=5)
    hist = net().fit(X, Y, optimizer=opt, progress=False)
    assert opt.n_iter_ <= 5 and len(hist.loss) == opt.n_iter_ and not opt.converged_
    opt = fx.LBFGS(max_iter=500, max_fun=8)
    net().fit(X, Y, optimizer=opt, progress=False)
    assert opt.n_fun_ <= 8 + 20  # scipy finishes the iteration it is in
    assert not opt.converged_


def test_validation_callbacks_and_patience_run_per_iteration():
    X, Y = problem()
    Xv, Yv = problem(40, seed=5)
    seen = []
    hist = net().fit(
        X,
        Y,
        optimizer=fx.LBFGS(max_iter=300),
        validation_data=(Xv, Yv),
        patience=3,
        callbacks=lambda n, h: seen.append(h.epochs),
        progress=False,
    )
    assert len(hist.val_loss) == len(hist.loss) == len(seen) and seen == list(range(1, len(seen) + 1))
    assert hist.best_epoch is not None and hist.val_score


def test_lbfgs_with_a_checkpoint_or_data_parallel_is_refused_before_work():
    X, Y = problem()
    with pytest.raises(ValueError, match="L-BFGS runs full-batch"):
        net().fit(X, Y, optimizer=fx.LBFGS(), checkpoint="c.ckpt", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_iter": 0}, "max_iter"), ({"max_fun": -1}, "max_fun"), ({"tol": -1.0}, "tol"), ({"memory": 0}, "memory")],
)
def test_bad_lbfgs_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fx.LBFGS(**kwargs)


def test_lbfgs_keeps_parameters_finite_when_the_objective_overflows():
    X, Y = problem()
    model = net()
    with contextlib.suppress(fx.DivergenceError):
        model.fit(X * 1e150, Y, optimizer=fx.LBFGS(max_iter=5), progress=False)
    assert np.all(np.isfinite(to_numpy(model.params)))
