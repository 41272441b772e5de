"""What every array library answers, in one base class: namespace, device, kernels, precision, mutability.

Each supported library is one subclass (:mod:`.numpy`, :mod:`.cupy`, :mod:`.torch`, :mod:`.strict`,
:mod:`.jax`), the one place that knows it. The rest of flatnet_xp asks a resolved :class:`Backend`
instead of testing names: whether arrays can be written in place, how to move data in, which
precision scope float64 needs, whether programs are compiled. In particular the rule "write into the
buffer, or rebind it" is :meth:`Backend.assign`, written once (array-api-extra's ``at()`` is the model).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from flatnet_xp.backends._convert import to_numpy
from flatnet_xp.backends._kernels import Ops

__all__ = ["Backend", "import_library"]

_NO_SCOPE = contextlib.nullcontext()


def import_library(name: str, extra: str) -> ModuleType:
    """Import an array library, or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = f"pip install 'flatnet_xp[{extra}]'" if extra else f"pip install {name}"
        raise ImportError(f"backend {name!r} needs the package {name!r}, which is not installed; try: {hint}") from exc


class Backend:
    """A resolved backend: everything the math and the training loop need, looked up once.

    Build one with :func:`flatnet_xp.backends.get_backend`.

    Attributes
    ----------
    name : str
        The backend's name (``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"``).
    xp : module
        The Array API namespace (array-api-compat's wrapper where one exists).
    device : object
        The device new arrays are placed on.
    ops : Ops
        The fast-path kernels (``out=`` kernels where the library has them).
    is_gpu : bool
        True when arrays live in accelerator memory (host synchronisations are expensive).
    mutable : bool
        Whether arrays can be updated in place (every backend but JAX). On an immutable backend
        parameters are replaced rather than updated (:meth:`assign`), layer "views" are slices made
        inside compiled programs, and ``fit`` runs each epoch as one compiled program.
    """

    name: ClassVar[str]
    #: The optional-dependency extra that installs the library ("" for NumPy).
    extra: ClassVar[str] = ""
    mutable: ClassVar[bool] = True

    def __init__(self, xp: Any, device: Any, ops: Ops, is_gpu: bool = False) -> None:
        self.xp, self.device, self.ops, self.is_gpu = xp, device, ops, is_gpu

    # ------------------------------------------------------------------ resolution
    @classmethod
    def resolve(cls, device: Any = None) -> Backend:
        """Import the library and check ``device``; raises ValueError for an unusable device."""
        raise NotImplementedError

    @classmethod
    def owns(cls, x: Any) -> bool:
        """True when ``x`` is an array of this backend's library (device not checked)."""
        raise NotImplementedError

    @classmethod
    def owns_namespace(cls, ns: Any) -> bool:
        """True when ``ns`` is this library's array namespace (or array-api-compat's wrapper of it)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ arrays
    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` (NumPy or any backend array) onto this backend; no copy when it is there."""
        if not isinstance(x, np.ndarray) and not self.owns(x):
            x = to_numpy(x)
        return self.xp.asarray(x, dtype=dtype, device=self.device)

    @classmethod
    def scope_of(cls, x: Any) -> contextlib.AbstractContextManager[Any]:
        """The precision scope an array ``x`` of this library is used in (operations on it keep its
        dtype there); a no-op except on JAX."""
        return contextlib.nullcontext()

    def all_finite(self, x: Any) -> bool:
        """Whether every element of ``x`` is finite (one reduction, one host sync)."""
        xp = self.xp
        return bool(xp.all(xp.isfinite(x)))

    def assign(self, target: Any, value: Any) -> Any:
        """The buffer holding ``value`` from now on: ``value`` copied INTO ``target`` on mutable
        backends (views of ``target`` stay valid), ``value`` itself on immutable ones."""
        if value is target:
            return target
        return self.ops.copy(value, target)

    def copy(self, x: Any, into: Any = None) -> Any:
        """A snapshot of ``x`` that later in-place updates cannot change (into ``into`` when given).
        Immutable arrays are their own snapshot."""
        return self.ops.copy(x, into)

    def index_dtype(self, float_dtype_name: str) -> Any:
        """The integer dtype for class indices of networks in ``float_dtype_name``."""
        return self.xp.int64

    def accumulation_dtype(self, dtype_name: str) -> Any:
        """The dtype sums over a dataset are accumulated in (float64 where the backend has it)."""
        return self.xp.float64

    # ------------------------------------------------------------------ execution
    def precision(self, dtype_name: str) -> contextlib.AbstractContextManager[Any]:
        """The scope in which ``dtype_name`` arrays keep their precision (JAX float64: scoped x64)."""
        return _NO_SCOPE

    @classmethod
    def compile(cls, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as this backend runs whole programs: itself (eager), or compiled (JAX's ``jit``)."""
        return fn

    def synchronize(self) -> None:
        """Wait until queued device work is done (a no-op on CPU libraries)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"
