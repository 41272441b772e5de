"""Backends: one class per array library, and the one function that resolves a name or namespace to one.

``get_backend("numpy" | "cupy" | "torch" | "array_api_strict" | "jax", device)`` (or one of those
libraries' namespaces) returns a :class:`Backend` that knows its namespace, device, kernels,
precision scope and whether its arrays can be written in place. Libraries are imported lazily, when
a backend of theirs is first resolved.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

from flatnet_xp.backends._base import Backend
from flatnet_xp.backends._convert import array_namespace, to_numpy
from flatnet_xp.backends._kernels import NO_OUT, Ops, stable_sigmoid
from flatnet_xp.backends.cupy import CuPyBackend
from flatnet_xp.backends.jax import JaxBackend
from flatnet_xp.backends.numpy import NumPyBackend
from flatnet_xp.backends.strict import StrictBackend
from flatnet_xp.backends.torch import TorchBackend

__all__ = [
    "BACKENDS",
    "NO_OUT",
    "Backend",
    "Ops",
    "array_namespace",
    "array_scope",
    "backend_of",
    "get_backend",
    "stable_sigmoid",
    "to_numpy",
]

_CLASSES: dict[str, type[Backend]] = {
    cls.name: cls for cls in (NumPyBackend, CuPyBackend, TorchBackend, StrictBackend, JaxBackend)
}

#: Backend names accepted by ``FlatMLP(backend=...)``, mapped to the extra that installs them.
BACKENDS: dict[str, str] = {name: cls.extra for name, cls in _CLASSES.items()}

_ALIASES = {"strict": "array_api_strict", "jax.numpy": "jax"}
_LAZY = ("dask", "ndonnx", "tensorflow", "mlx")


def _unsupported(name: str) -> ValueError:
    return ValueError(
        f"backend: {name} arrays are lazily evaluated (or the library is not supported); "
        f"flatnet_xp runs on {sorted(BACKENDS)}"
    )


def _class_of_namespace(ns: Any) -> type[Backend]:
    for cls in _CLASSES.values():
        if cls.owns_namespace(ns):
            return cls
    modname = getattr(ns, "__name__", type(ns).__name__)
    if any(lazy in modname for lazy in _LAZY):
        raise _unsupported(modname)
    raise TypeError(f"backend: expected one of {sorted(BACKENDS)} or one of their array namespaces, got {ns!r}")


def get_backend(backend: str | ModuleType | Backend = "numpy", device: Any = None) -> Backend:
    """Resolve a backend name or namespace (and an optional device) once.

    Parameters
    ----------
    backend : str, module or Backend
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"`` (or ``"strict"``) or ``"jax"``,
        or one of those libraries' namespaces (``numpy``, ``cupy``, ``torch``, ``array_api_strict``,
        ``jax.numpy``, or array-api-compat's wrappers of them). A resolved Backend is returned as is
        when ``device`` is None.
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
    if isinstance(backend, Backend):
        return backend if device is None else type(backend).resolve(device)
    if isinstance(backend, str):
        name = backend.lower().replace("-", "_")
        if name in ("dask", "dask.array"):
            raise _unsupported(backend)
        name = _ALIASES.get(name, name)
        if name not in _CLASSES:
            raise ValueError(f"backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
        cls = _CLASSES[name]
    elif isinstance(backend, ModuleType) or hasattr(backend, "asarray"):
        cls = _class_of_namespace(backend)
    else:
        raise TypeError(
            f"backend: expected a name in {sorted(BACKENDS)} or an array namespace, "
            f"got {type(backend).__name__} {backend!r}"
        )
    return cls.resolve(device)


def array_scope(x: Any) -> contextlib.AbstractContextManager[Any]:
    """The precision scope that array ``x`` is used in (JAX: x64 on for a 64-bit array), else a no-op."""
    cls = backend_of(x)
    return contextlib.nullcontext() if cls is None else cls.scope_of(x)


def backend_of(x: Any) -> type[Backend] | None:
    """The backend class whose library ``x`` is an array of, or None."""
    for cls in _CLASSES.values():
        if cls.owns(x):
            return cls
    return None
