"""Shared fixtures: the ``xp`` backend fixture (numpy, strict, torch, cupy) and small data makers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from flatnet_xp.backends import get_backend, to_numpy


def backend_unavailable(name: str) -> str | None:
    """None when backend ``name`` can run here, else the reason to skip."""
    module = {"array_api_strict": "array_api_strict", "torch_cuda": "torch"}.get(name, name)
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    if name == "cupy":
        try:
            get_backend("cupy")
        except (RuntimeError, ImportError) as exc:
            return f"no usable GPU for cupy: {exc}"
    if name == "torch_cuda":
        import torch

        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU"
    return None


BACKEND_PARAMS = [
    pytest.param(
        name, id=short, marks=pytest.mark.skipif(bool(reason := backend_unavailable(name)), reason=reason or "")
    )
    for name, short in (
        ("numpy", "numpy"),
        ("array_api_strict", "strict"),
        ("torch", "torch"),
        ("cupy", "cupy"),
        ("torch_cuda", "torch-cuda"),
        ("jax", "jax"),
    )
]


@pytest.fixture(params=BACKEND_PARAMS)
def xp(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Name of a backend that runs here (skips the others): every test using it runs on each.

    ``torch-cuda`` runs the torch backend with CUDA as its default device (the name is "torch").
    """
    if request.param == "torch_cuda":
        from flatnet_xp.backends.torch import TorchBackend

        monkeypatch.setattr(TorchBackend, "default_device", "cuda")
        return "torch"
    return str(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def assert_close(actual, desired, *, rtol: float = 1e-12, atol: float = 0.0) -> None:
    """Compare any backend arrays after checking shape; values via NumPy."""
    a, d = np.asarray(to_numpy(actual)), np.asarray(to_numpy(desired))
    assert a.shape == d.shape, f"shape {a.shape} != {d.shape}"
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol)
