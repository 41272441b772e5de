"""The one place that knows backend names: resolve a name or namespace to an Array API backend."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from flatnet_xp._shim import Ops, make_ops

__all__ = ["BACKENDS", "Backend", "array_namespace", "get_backend", "to_numpy"]

#: Backend names accepted by ``FlatMLP(backend=...)``, mapped to the extra that installs them.
BACKENDS: dict[str, str] = {
    "numpy": "",
    "cupy": "cupy",
    "torch": "torch",
    "array_api_strict": "test",
}

_IMMUTABLE_REASON = (
    "flatnet_xp keeps every layer's weights as views of ONE flat parameter buffer and updates "
    "them in place, so it needs a mutable array library (numpy, cupy, torch, array_api_strict); "
    "{name} arrays are immutable (or lazily evaluated) and cannot be updated through views"
)


@dataclass(frozen=True)
class Backend:
    """A resolved backend: everything the training loop needs, looked up once.

    Attributes
    ----------
    name : str
        One of :data:`BACKENDS`.
    xp : module
        The Array API namespace (array-api-compat's wrapper where one exists).
    device : object
        The device new arrays are placed on.
    ops : Ops
        The fast-path shim (``out=`` kernels where the library has them).
    is_gpu : bool
        True when arrays live in accelerator memory (host syncs are expensive).
    """

    name: str
    xp: Any
    device: Any
    ops: Ops
    is_gpu: bool

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's library (device not checked)."""
        return _OWNS[self.name](x)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` (NumPy or any backend array) onto this backend; no copy when it is there."""
        if not isinstance(x, np.ndarray) and not self.owns(x):
            x = to_numpy(x)
        return self.xp.asarray(x, dtype=dtype, device=self.device)


def _is_strict_array(x: Any) -> bool:
    return type(x).__module__.startswith("array_api_strict")


_OWNS = {
    "numpy": array_api_compat.is_numpy_array,
    "cupy": array_api_compat.is_cupy_array,
    "torch": array_api_compat.is_torch_array,
    "array_api_strict": _is_strict_array,
}


def _namespace_or_none(x: Any) -> Any:
    try:
        return array_api_compat.array_namespace(x)
    except TypeError:
        return None


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = BACKENDS[name]
        hint = f"pip install 'flatnet_xp[{extra}]'" if extra else "pip install numpy"
        raise ImportError(f"backend {name!r} needs the package {name!r}, which is not installed; try: {hint}") from exc


def _name_of_namespace(ns: Any) -> str:
    if array_api_compat.is_numpy_namespace(ns):
        return "numpy"
    if array_api_compat.is_cupy_namespace(ns):
        return "cupy"
    if array_api_compat.is_torch_namespace(ns):
        return "torch"
    if array_api_compat.is_array_api_strict_namespace(ns):
        return "array_api_strict"
    modname = getattr(ns, "__name__", type(ns).__name__)
    for immutable in ("jax", "dask", "ndonnx", "tensorflow", "mlx"):
        if immutable in modname:
            raise ValueError("backend: " + _IMMUTABLE_REASON.format(name=modname))
    raise TypeError(f"backend: expected one of {sorted(BACKENDS)} or one of their array namespaces, got {ns!r}")


def get_backend(backend: str | ModuleType = "numpy", device: Any = None) -> Backend:
    """Resolve a backend name or namespace (and an optional device) once.

    Parameters
    ----------
    backend : str or module
        ``"numpy"``, ``"cupy"``, ``"torch"`` or ``"array_api_strict"``, or one of those
        libraries' namespaces (``numpy``, ``cupy``, ``torch``, ``array_api_strict``, or
        array-api-compat's wrappers of them).
    device : object, optional
        ``None`` for the library's default device. For torch e.g. ``"cpu"`` or ``"cuda:0"``;
        for cupy an integer device id.

    Raises
    ------
    ValueError
        Unknown backend name; an immutable library such as JAX; an unusable device.
    TypeError
        ``backend`` is neither a string nor an array namespace.
    ImportError
        The backend's package is not installed (the message names the extra to install).
    RuntimeError
        ``cupy`` without a usable CUDA GPU.
    """
    if isinstance(backend, str):
        name = backend.lower().replace("-", "_")
        if name in ("jax", "jax.numpy", "dask", "dask.array"):
            raise ValueError("backend: " + _IMMUTABLE_REASON.format(name=backend))
        if name == "strict":
            name = "array_api_strict"
        if name not in BACKENDS:
            raise ValueError(f"backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
    elif isinstance(backend, ModuleType) or hasattr(backend, "asarray"):
        name = _name_of_namespace(backend)
    else:
        raise TypeError(
            f"backend: expected a name in {sorted(BACKENDS)} or an array namespace, "
            f"got {type(backend).__name__} {backend!r}"
        )
    native = _import(name)
    if name == "numpy":
        xp = importlib.import_module("array_api_compat.numpy")
        dev = "cpu"
        if device not in (None, "cpu"):
            raise ValueError(f"device: numpy arrays live on 'cpu', got {device!r}")
        is_gpu = False
    elif name == "array_api_strict":
        xp = native
        dev = xp.Device() if device is None else device
        is_gpu = False
    elif name == "cupy":
        xp = importlib.import_module("array_api_compat.cupy")
        try:
            count = native.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver missing, no device, broken install
            raise RuntimeError(f"backend 'cupy' needs a usable CUDA GPU; CUDA said: {exc}") from exc
        if count < 1:
            raise RuntimeError("backend 'cupy' needs a usable CUDA GPU; none was found")
        dev = native.cuda.Device(0 if device is None else int(device))
        is_gpu = True
    else:  # torch
        xp = importlib.import_module("array_api_compat.torch")
        try:
            dev = native.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device: not a torch device: {device!r} ({exc})") from exc
        if dev.type == "cuda" and not native.cuda.is_available():
            raise RuntimeError(f"device {device!r}: torch reports no usable CUDA GPU")
        is_gpu = dev.type != "cpu"
    return Backend(name=name, xp=xp, device=dev, ops=make_ops(name, native, xp), is_gpu=is_gpu)


def array_namespace(x: Any) -> Any:
    """The Array API namespace of ``x`` (array-api-compat), or ``None`` for non-arrays."""
    return _namespace_or_none(x)


def to_numpy(arr: Any) -> np.ndarray:
    """Copy (or view, where possible) any supported backend array into a NumPy array.

    Parameters
    ----------
    arr : array
        A NumPy, CuPy, PyTorch (any device) or array-api-strict array, or anything
        ``numpy.asarray`` accepts.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype.
    """
    if isinstance(arr, np.ndarray):
        return arr
    if array_api_compat.is_cupy_array(arr):
        return arr.get()
    if array_api_compat.is_torch_array(arr):
        return arr.detach().cpu().numpy()
    if _is_strict_array(arr):
        return np.asarray(np.from_dlpack(arr))
    return np.asarray(arr)
