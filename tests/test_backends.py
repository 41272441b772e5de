"""Backend resolution: names, namespaces, clear errors, conversion to NumPy."""

from __future__ import annotations

import types

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import get_backend, to_numpy


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("numpy", "numpy"),
        ("array_api_compat.numpy", "numpy"),
        ("array_api_strict", "array_api_strict"),
        ("torch", "torch"),
        ("array_api_compat.torch", "torch"),
        ("jax.numpy", "jax"),
    ],
)
def test_a_namespace_object_selects_its_backend(namespace, name):
    module = pytest.importorskip(namespace)
    net = fx.FlatMLP([3, 2], backend=module, dtype="float64", seed=0)
    assert net.backend == name
    np.testing.assert_array_equal(to_numpy(net.params), fx.FlatMLP([3, 2], dtype="float64", seed=0).params)


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=r"backend: expected one of \['array_api_strict', 'cupy', 'jax', 'numpy', 'torch'\]"
    ):
        get_backend("mxnet")


@pytest.mark.parametrize("name", ["dask", "dask.array"])
def test_lazy_libraries_are_refused_with_the_reason(name):
    with pytest.raises(ValueError, match=r"lazily evaluated"):
        get_backend(name)


def test_a_lazy_namespace_object_is_refused():
    fake_dask = types.ModuleType("dask.array")
    fake_dask.asarray = lambda x: x
    with pytest.raises(ValueError, match="lazily evaluated"):
        get_backend(fake_dask)


def test_a_missing_package_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    monkeypatch.delitem(__import__("sys").modules, "cupy", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'flatnet_xp\[cupy\]'"):
        get_backend("cupy")


def test_numpy_has_no_other_device():
    with pytest.raises(ValueError, match="device: numpy arrays live on 'cpu'"):
        get_backend("numpy", device="cuda:0")


def test_torch_cuda_without_a_gpu_is_a_value_error_naming_device():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=r"device: 'cuda' is not available: torch reports no usable CUDA GPU"):
        fx.FlatMLP([2, 2], backend="torch", device="cuda")


@pytest.mark.parametrize(
    ("backend", "device"),
    [
        ("torch", "bogus"),
        ("torch", "mps"),
        ("torch", 3.5),
        ("array_api_strict", "CPU_DEVICE"),
        ("jax", "tpu:7"),
        ("jax", 3.5),
        ("numpy", "gpu"),
    ],
)
def test_an_invalid_device_is_a_value_error_naming_device(backend, device):
    pytest.importorskip({"array_api_strict": "array_api_strict"}.get(backend, backend))
    with pytest.raises(ValueError, match=r"^device: "):
        fx.FlatMLP([2, 2], backend=backend, device=device)


def test_a_strict_device_object_is_accepted():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.__array_namespace_info__().devices()[1]
    assert fx.FlatMLP([2, 2], backend="array_api_strict", device=dev).device == dev


def test_to_numpy_of_every_backend(xp):
    net = fx.FlatMLP([2, 3], backend=xp, dtype="float64", seed=0)
    out = to_numpy(net.params)
    assert isinstance(out, np.ndarray) and out.shape == (9,)
    assert to_numpy([1.0, 2.0]).tolist() == [1.0, 2.0]
