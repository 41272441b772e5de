"""The same seeded training gives the same weights on every backend."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import flatnet_xp as fx
from tests.conftest import assert_close

CASES = {
    "relu-ce-adam": (["relu", "relu", "identity"], "cross_entropy", lambda: fx.Adam(lr=1e-2)),
    "tanh-mse-momentum": (["tanh", "tanh", "identity"], "mse", lambda: fx.SGD(lr=0.05, momentum=0.9, nesterov=True)),
    "sigmoid-bce-rmsprop": (["sigmoid", "leaky_relu", "identity"], "bce", lambda: fx.RMSprop(lr=1e-2)),
}


def _data(loss: str):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(53, 6))
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, size=53)
    if loss == "bce":
        return X, (rng.random((53, 3)) > 0.5).astype(float)
    return X, rng.normal(size=(53, 3))


def _train(backend: str, case: str, dtype: str = "float64") -> fx.FlatMLP:
    acts, loss, make_opt = CASES[case]
    X, Y = _data(loss)
    net = fx.FlatMLP([6, 8, 7, 3], activations=acts, backend=backend, dtype=dtype, seed=3)
    net.fit(X, Y, epochs=4, batch_size=8, optimizer=make_opt(), loss=loss, seed=9, progress=False)
    return net


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_training_matches_numpy_within_1e12(xp, case):
    assert_close(_train(xp, case).params, _train("numpy", case).params, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_training_matches_numpy_within_1e5(xp, case):
    # JAX's default matmul precision on a GPU is TF32 (see docs/backends.md); the comparison is of
    # the float32 math, so it runs at float32 precision there.
    with _float32_matmuls(xp):
        ours = _train(xp, case, "float32").params
    assert_close(ours, _train("numpy", case, "float32").params, rtol=1e-5, atol=1e-5)


def _float32_matmuls(xp: str) -> contextlib.AbstractContextManager[object]:
    """JAX's ``default_matmul_precision("float32")`` on JAX, nothing elsewhere."""
    if xp != "jax":
        return contextlib.nullcontext()
    import jax

    return jax.default_matmul_precision("float32")
