"""Backprop checked three ways: central finite differences, PyTorch autograd, one step by hand."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.activations import ACTIVATIONS
from flatnet_xp.backends import to_numpy
from flatnet_xp.losses import LOSSES
from tests.conftest import assert_close

HAS_TORCH = importlib.util.find_spec("torch") is not None


def make_problem(loss: str, act: str, rng: np.random.Generator, n_out: int = 3):
    sizes = [4, 5, n_out]
    net = fx.FlatMLP(sizes, activations=[act, "identity" if loss != "mse" else act], dtype="float64", seed=7)
    X = rng.normal(size=(6, 4))
    if loss == "cross_entropy":
        Y = rng.integers(0, n_out, size=6)
    elif loss == "bce":
        Y = (rng.random(size=(6, n_out)) > 0.5).astype(float)
    elif loss == "poisson":
        Y = rng.poisson(2.0, size=(6, n_out)).astype(float)
    else:
        Y = rng.normal(size=(6, n_out))
    return net, X, Y


def numeric_gradient(net: fx.FlatMLP, X, Y, loss, eps: float = 1e-6, sample_weight=None) -> np.ndarray:
    w0, b0 = net.get_params()
    flat = np.concatenate([w0, b0])
    grad = np.empty_like(flat)
    n_w = w0.size
    for i in range(flat.size):
        values = []
        for sign in (1, -1):
            p = flat.copy()
            p[i] += sign * eps
            net.set_params(p[:n_w], p[n_w:])
            values.append(net.evaluate(X, Y, loss=loss, sample_weight=sample_weight))
        grad[i] = (values[0] - values[1]) / (2 * eps)
    net.set_params(w0, b0)
    return grad


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce", "poisson"])
def test_gradient_matches_finite_differences(xp, act, loss, rng):
    ref, X, Y = make_problem(loss, act, rng)
    net = fx.FlatMLP(ref.layout.sizes, activations=ref.activations, backend=xp, dtype="float64")
    net.set_params(*ref.get_params())
    value, dw, db = net.loss_and_grad(X, Y, loss=loss)
    numeric = numeric_gradient(net, X, Y, loss)
    analytic = np.concatenate([to_numpy(dw), to_numpy(db)])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    assert value == pytest.approx(net.evaluate(X, Y, loss=loss), rel=1e-12)


WEIGHTS = np.array([0.5, 2.0, 0.0, 1.0, 3.0, 1.5])


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce", "poisson"])
def test_weighted_and_scaled_gradients_match_finite_differences(xp, loss, rng):
    ref, X, Y = make_problem(loss, "tanh", rng)
    net = fx.FlatMLP(ref.layout.sizes, activations=ref.activations, backend=xp, dtype="float64")
    net.set_params(*ref.get_params())
    scaled = LOSSES[loss].scaled(0.5)
    value, dw, db = net.loss_and_grad(X, Y, loss=scaled, sample_weight=WEIGHTS)
    numeric = numeric_gradient(net, X, Y, scaled, sample_weight=WEIGHTS)
    np.testing.assert_allclose(np.concatenate([to_numpy(dw), to_numpy(db)]), numeric, rtol=1e-5, atol=1e-8)
    assert value == pytest.approx(0.5 * net.evaluate(X, Y, loss=loss, sample_weight=WEIGHTS), rel=1e-12)


def test_integer_sample_weights_equal_repeated_samples(xp, rng):
    ref, X, Y = make_problem("mse", "tanh", rng)
    net = fx.FlatMLP(ref.layout.sizes, activations=ref.activations, backend=xp, dtype="float64")
    net.set_params(*ref.get_params())
    counts = np.array([1, 2, 0, 3, 1, 1])
    weighted = net.loss_and_grad(X, Y, sample_weight=counts)
    repeated = net.loss_and_grad(np.repeat(X, counts, axis=0), np.repeat(Y, counts, axis=0))
    assert weighted[0] == pytest.approx(repeated[0], rel=1e-12)
    assert_close(weighted[1], repeated[1], rtol=1e-10, atol=1e-15)
    assert_close(weighted[2], repeated[2], rtol=1e-10, atol=1e-15)


def test_cross_entropy_accepts_one_hot_rows_like_labels(xp, rng):
    net, X, labels = make_problem("cross_entropy", "tanh", rng)
    net2 = fx.FlatMLP(net.layout.sizes, activations=net.activations, backend=xp, dtype="float64")
    net2.set_params(*net.get_params())
    a = net2.loss_and_grad(X, labels, loss="cross_entropy")
    b = net2.loss_and_grad(X, np.eye(3)[labels], loss="cross_entropy")
    assert a[0] == pytest.approx(b[0], rel=1e-14)
    assert_close(a[1], b[1])


def test_loss_and_grad_returns_new_arrays_not_the_internal_buffer(rng):
    net, X, Y = make_problem("mse", "tanh", rng)
    _, dw, _ = net.loss_and_grad(X, Y)
    before = np.array(dw)
    net.loss_and_grad(X * 2, Y)
    np.testing.assert_array_equal(dw, before)


def torch_loss(loss: str):
    import torch

    def poisson(z, y):  # PoissonNLLLoss(log_input=True) plus our constant y log y - y
        return torch.nn.PoissonNLLLoss(log_input=True)(z, y) + torch.mean(torch.special.xlogy(y, y) - y)

    return {
        "mse": torch.nn.MSELoss(),
        "cross_entropy": torch.nn.CrossEntropyLoss(),
        "bce": torch.nn.BCEWithLogitsLoss(),
        "poisson": poisson,
    }[loss]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce", "poisson"])
def test_gradient_matches_torch_autograd_on_the_same_flat_buffers(xp, act, loss, rng):
    import torch

    ref, X, Y = make_problem(loss, act, rng)
    net = fx.FlatMLP(ref.layout.sizes, activations=ref.activations, backend=xp, dtype="float64")
    net.set_params(*ref.get_params())
    value, dw, db = net.loss_and_grad(X, Y, loss=loss)

    lay = net.layout
    w = torch.tensor(ref.get_params()[0], requires_grad=True)
    b = torch.tensor(ref.get_params()[1], requires_grad=True)
    fns = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": torch.nn.functional.leaky_relu,
        "identity": lambda s: s,
    }
    a = torch.tensor(X)
    for k, act_k in enumerate(net.activations):
        W = w[lay.w_slice(k)].view(lay.shapes[k])  # the same flat layout, no transpose
        a = fns[act_k](a @ W.T + b[lay.b_slice(k)])
    target = torch.tensor(Y) if loss != "cross_entropy" else torch.tensor(Y, dtype=torch.long)
    t_loss = torch_loss(loss)(a, target)
    t_loss.backward()
    assert value == pytest.approx(t_loss.item(), rel=1e-12)
    assert_close(dw, w.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert_close(db, b.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_one_sgd_step_worked_by_hand(xp):
    # Net [2, 1], sigmoid; w = [0.5, -0.5], b = [0.1]; x = [1, 2], y = [1]; mse; lr = 0.1.
    # s = 0.5*1 - 0.5*2 + 0.1 = -0.4;  z = 1/(1+e^0.4) = 0.401312339887548
    # loss = (z - 1)^2 = 0.35842691437092283
    # dL/dz = 2(z - 1) = -1.197375320224904;  f'(s) = z(1 - z) = 0.24026074574152914
    # delta = -0.2876822873697377;  dw = delta * x;  db = delta
    # w <- [0.5 - 0.1*delta, -0.5 - 0.1*2*delta];  b <- 0.1 - 0.1*delta
    net = fx.FlatMLP([2, 1], activations="sigmoid", backend=xp, dtype="float64")
    net.set_params(np.array([0.5, -0.5]), np.array([0.1]))
    hist = net.fit(
        np.array([[1.0, 2.0]]),
        np.array([[1.0]]),
        epochs=1,
        batch_size=1,
        optimizer=fx.SGD(lr=0.1),
        shuffle=False,
        progress=False,
    )
    assert hist.batch_loss == [pytest.approx(0.35842691437092283, rel=1e-15)]
    assert_close(net.w, np.array([0.5287682287369738, -0.44246354252605247]), rtol=1e-15)
    assert_close(net.b, np.array([0.12876822873697377]), rtol=1e-15)
