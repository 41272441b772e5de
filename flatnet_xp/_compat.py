"""The one place that knows backend names: resolve a name or namespace to an Array API backend."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from flatnet_xp._shim import Ops, make_ops

__all__ = ["BACKENDS", "Backend", "array_namespace", "get_backend", "precision", "to_numpy"]

#: Backend names accepted by ``FlatMLP(backend=...)``, mapped to the extra that installs them.
BACKENDS: dict[str, str] = {
    "numpy": "",
    "cupy": "cupy",
    "torch": "torch",
    "array_api_strict": "test",
    "jax": "jax",
}

_UNSUPPORTED_REASON = (
    f"{{name}} arrays are lazily evaluated (or the library is not supported); flatnet_xp runs on {sorted(BACKENDS)}"
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

    Notes
    -----
    ``mutable`` is False for JAX: its arrays cannot be written in place, so parameters are replaced
    rather than updated, layer "views" are slices made inside compiled programs, and ``fit`` runs
    each epoch as one compiled program (:mod:`flatnet_xp.compiled`).
    """

    name: str
    xp: Any
    device: Any
    ops: Ops
    is_gpu: bool

    @property
    def mutable(self) -> bool:
        """True when arrays can be updated in place (every backend but JAX)."""
        return self.ops.mutable

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's library (device not checked)."""
        return _OWNS[self.name](x)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` (NumPy or any backend array) onto this backend; no copy when it is there."""
        if not isinstance(x, np.ndarray) and not self.owns(x):
            x = to_numpy(x)
        if self.name == "jax":
            import jax

            with jax.enable_x64(True):  # keep float64/int64 inputs as they are (no silent downcast)
                return jax.device_put(self.xp.asarray(x, dtype=dtype), self.device)
        return self.xp.asarray(x, dtype=dtype, device=self.device)


_NO_SCOPE = contextlib.nullcontext()


def precision(backend: Backend, dtype: Any) -> contextlib.AbstractContextManager[Any]:
    """The scope in which ``dtype`` arrays of ``backend`` keep their precision.

    JAX computes in 32 bits unless 64-bit mode is on; flatnet_xp never flips the user's global
    setting but runs each float64 JAX operation inside JAX's scoped ``jax.enable_x64(True)``
    context (thread-local). Every other backend: a no-op context.
    """
    if backend.name == "jax" and dtype is not None and "64" in str(dtype):
        import jax

        return jax.enable_x64(True)
    return _NO_SCOPE


def _is_strict_array(x: Any) -> bool:
    return type(x).__module__.startswith("array_api_strict")


_OWNS: dict[str, Callable[[Any], bool]] = {
    "numpy": array_api_compat.is_numpy_array,
    "cupy": array_api_compat.is_cupy_array,
    "torch": array_api_compat.is_torch_array,
    "array_api_strict": _is_strict_array,
    "jax": array_api_compat.is_jax_array,
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
    if array_api_compat.is_jax_namespace(ns):
        return "jax"
    modname = getattr(ns, "__name__", type(ns).__name__)
    for lazy in ("dask", "ndonnx", "tensorflow", "mlx"):
        if lazy in modname:
            raise ValueError("backend: " + _UNSUPPORTED_REASON.format(name=modname))
    raise TypeError(f"backend: expected one of {sorted(BACKENDS)} or one of their array namespaces, got {ns!r}")


def get_backend(backend: str | ModuleType = "numpy", device: Any = None) -> Backend:
    """Resolve a backend name or namespace (and an optional device) once.

    Parameters
    ----------
    backend : str or module
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"`` or ``"jax"``, or one of those
        libraries' namespaces (``numpy``, ``cupy``, ``torch``, ``array_api_strict``,
        ``jax.numpy``, or array-api-compat's wrappers of them).
    device : object, optional
        ``None`` for the library's default device. For torch e.g. ``"cpu"`` or ``"cuda:0"``;
        for cupy an integer device id; for JAX a ``jax.Device``, a platform name (``"cpu"``,
        ``"gpu"``) or ``"platform:index"``; for array-api-strict one of its ``Device`` objects.

    Raises
    ------
    ValueError
        Unknown backend name; a lazily evaluated library such as Dask; an invalid or unusable device.
    TypeError
        ``backend`` is neither a string nor an array namespace.
    ImportError
        The backend's package is not installed (the message names the extra to install).
    RuntimeError
        ``cupy`` without a usable CUDA GPU.
    """
    if isinstance(backend, str):
        name = backend.lower().replace("-", "_")
        if name in ("dask", "dask.array"):
            raise ValueError("backend: " + _UNSUPPORTED_REASON.format(name=backend))
        name = {"strict": "array_api_strict", "jax.numpy": "jax"}.get(name, name)
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
    xp, dev, is_gpu = _RESOLVE[name](native, device)
    return Backend(name=name, xp=xp, device=dev, ops=make_ops(name, native, xp), is_gpu=is_gpu)


def _numpy_device(native: Any, device: Any) -> tuple[Any, Any, bool]:
    if device not in (None, "cpu"):
        raise ValueError(f"device: numpy arrays live on 'cpu', got {device!r}")
    return importlib.import_module("array_api_compat.numpy"), "cpu", False


def _strict_device(native: Any, device: Any) -> tuple[Any, Any, bool]:
    devices = native.__array_namespace_info__().devices()
    if device is None:
        return native, native.Device(), False
    if device not in devices:
        raise ValueError(f"device: expected one of array_api_strict's devices {list(devices)}, got {device!r}")
    return native, device, False


def _cupy_device(native: Any, device: Any) -> tuple[Any, Any, bool]:
    try:
        count = native.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing, no device, broken install
        raise RuntimeError(f"backend 'cupy' needs a usable CUDA GPU; CUDA said: {exc}") from exc
    if count < 1:
        raise RuntimeError("backend 'cupy' needs a usable CUDA GPU; none was found")
    if device is not None and (isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < count):
        raise ValueError(f"device: expected a CUDA device index in [0, {count - 1}] for cupy, got {device!r}")
    return importlib.import_module("array_api_compat.cupy"), native.cuda.Device(device or 0), True


def _torch_device(native: Any, device: Any) -> tuple[Any, Any, bool]:
    try:
        dev = native.device("cpu" if device is None else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device: not a torch device: {device!r} ({exc})") from exc
    if dev.type == "cuda":
        if not native.cuda.is_available():
            raise ValueError(f"device: {device!r} is not available: torch reports no usable CUDA GPU")
        if dev.index is not None and dev.index >= native.cuda.device_count():
            raise ValueError(f"device: {device!r} is not available: torch sees {native.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device: expected 'cpu' or 'cuda[:i]' for torch, got {device!r}")
    return importlib.import_module("array_api_compat.torch"), dev, dev.type != "cpu"


def _jax_device(native: Any, device: Any) -> tuple[Any, Any, bool]:
    import jax

    if device is None:
        dev = jax.devices()[0]
    elif isinstance(device, jax.Device):
        dev = device
    elif isinstance(device, str):
        platform, _, index = device.partition(":")
        platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
        try:
            candidates = jax.devices(platform)
            dev = candidates[int(index) if index else 0]
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ValueError(f"device: {device!r} is not a JAX device here ({exc})") from None
    else:
        raise ValueError(f"device: expected a jax.Device or a name like 'cpu' or 'gpu:0', got {device!r}")
    return importlib.import_module("jax.numpy"), dev, dev.platform != "cpu"


_RESOLVE = {
    "numpy": _numpy_device,
    "array_api_strict": _strict_device,
    "cupy": _cupy_device,
    "torch": _torch_device,
    "jax": _jax_device,
}


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
    return np.asarray(arr)  # JAX arrays, lists, scalars
