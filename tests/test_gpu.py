"""GPU guarantees (skipped without a GPU): no host synchronisation per step, agreement with NumPy,
files that move between GPU and CPU bit-identically."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy
from tests.conftest import backend_unavailable

GPU_BACKENDS = [
    pytest.param(b, d, id=i, marks=pytest.mark.skipif(bool(r := backend_unavailable(n)), reason=r or ""))
    for b, d, i, n in (("cupy", None, "cupy", "cupy"), ("torch", "cuda", "torch-cuda", "torch_cuda"))
]


@contextlib.contextmanager
def count_host_reads(backend: str) -> Iterator[list[str]]:
    """Record every device-to-host read (``float``, ``bool``, ``item``, ``get``/``cpu``...) of ``backend``'s arrays."""
    reads: list[str] = []
    import torch

    cls = torch.Tensor
    names = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
    originals = {name: getattr(cls, name) for name in names}

    def counted(name: str):  # type: ignore[no-untyped-def]
        original = originals[name]

        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if getattr(self, "is_cuda", False):
                reads.append(name)
            return original(self, *args, **kwargs)

        return wrapper

    try:
        for name in names:
            setattr(cls, name, counted(name))
        yield reads
    finally:
        for name, original in originals.items():
            setattr(cls, name, original)


@pytest.mark.parametrize(("backend", "device"), GPU_BACKENDS)
def test_fit_reads_the_device_a_few_times_per_epoch_not_per_step(backend, device):
    if backend == "cupy":
        # cupy.ndarray is an immutable extension type: its reads cannot be counted from Python. The
        # engine's lazy GPU path is the same code for both libraries, counted here on torch-cuda.
        pytest.skip("cupy.ndarray's methods cannot be wrapped to count host reads")
    rng = np.random.default_rng(0)
    net = fx.FlatMLP([20, 64, 3], ["relu", "identity"], backend=backend, device=device, seed=0)
    X = net.flat_params.backend.asarray(rng.normal(size=(400, 20)), dtype=net.dtype)
    y = net.flat_params.backend.asarray(rng.integers(0, 3, size=400))
    kw = dict(batch_size=8, loss="cross_entropy", optimizer=fx.Adam(1e-3), shuffle=False, progress=False)
    net.fit(X, y, epochs=1, **kw)  # warm caches and allocations
    with count_host_reads(backend) as reads:
        net.fit(X, y, epochs=3, **kw)  # 50 steps an epoch
    per_epoch = len(reads) / 3
    assert per_epoch <= 12, f"{len(reads)} host reads in 3 epochs of 50 steps: {reads}"


@pytest.mark.parametrize(("backend", "device"), GPU_BACKENDS)
def test_float32_training_on_the_gpu_agrees_with_numpy(backend, device):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(256, 16)).astype(np.float32), rng.normal(size=(256, 4)).astype(np.float32)
    kw = dict(epochs=3, batch_size=32, optimizer=fx.Adam(1e-3), seed=0, progress=False)
    ref = fx.FlatMLP([16, 32, 4], ["tanh", "identity"], dtype="float32", seed=0)
    gpu = fx.FlatMLP([16, 32, 4], ["tanh", "identity"], dtype="float32", seed=0, backend=backend, device=device)
    ref.fit(X, Y, **kw)
    gpu.fit(X, Y, **kw)
    np.testing.assert_allclose(to_numpy(gpu.params), ref.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("backend", "device"), GPU_BACKENDS)
def test_a_file_saved_on_the_gpu_loads_on_numpy_bit_identically(backend, device, tmp_path):
    net = fx.FlatMLP([7, 9, 2], ["relu", "identity"], backend=backend, device=device, seed=3)
    net.save(tmp_path / "m.safetensors")
    back = fx.FlatMLP.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back.params, to_numpy(net.params))
    again = fx.FlatMLP.load(tmp_path / "m.safetensors", backend=backend, device=device)
    np.testing.assert_array_equal(to_numpy(again.params), to_numpy(net.params))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_on_a_gpu_agrees_with_numpy_when_there_is_one():
    import jax

    try:
        device = jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("JAX sees no GPU")
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(128, 8)), rng.normal(size=(128, 2))
    kw = dict(epochs=3, batch_size=16, optimizer=fx.SGD(0.05, momentum=0.9), seed=0, progress=False)
    ref = fx.FlatMLP([8, 16, 2], ["tanh", "identity"], dtype="float64", seed=0)
    gpu = fx.FlatMLP([8, 16, 2], ["tanh", "identity"], dtype="float64", seed=0, backend="jax", device=device)
    ref.fit(X, Y, **kw)
    gpu.fit(X, Y, **kw)
    np.testing.assert_allclose(to_numpy(gpu.params), ref.params, rtol=1e-10, atol=1e-12)
