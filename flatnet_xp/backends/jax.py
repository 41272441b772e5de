"""JAX: immutable arrays, so every kernel returns a new array and whole programs are compiled (``jit``).

float64 runs inside JAX's scoped ``jax.enable_x64(True)`` context (thread-local): the user's global
JAX configuration is never changed, and never changes our results (float32 networks compute in
float32 whether or not x64 is enabled globally).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from flatnet_xp.backends._base import Backend, import_library
from flatnet_xp.backends._convert import to_numpy
from flatnet_xp.backends._kernels import Ops

__all__ = ["JaxBackend"]


@functools.cache
def _ops(xp: Any) -> Ops:
    """Immutable arrays: ``out`` is ignored, every kernel returns a new array.

    ``join`` writes each part into one new buffer (XLA's dynamic-update-slice) rather than
    concatenating: XLA's CPU concatenation of a 25M-element parameter vector took 777 ms against
    33 ms (measured; it ended every compiled epoch).
    """
    import jax

    update_slice = jax.lax.dynamic_update_slice

    def join(parts: list[Any]) -> Any:
        size = sum(int(math.prod(p.shape)) for p in parts)
        out = xp.zeros(size, dtype=parts[0].dtype)
        lo = 0
        for p in parts:
            flat = xp.reshape(p, (-1,))
            out = update_slice(out, flat, (lo,))
            lo += int(flat.shape[0])
        return out

    return Ops(
        matmul=lambda a, b, out=None: a @ b,
        add=lambda a, b, out=None: a + b,
        subtract=lambda a, b, out=None: a - b,
        multiply=lambda a, b, out=None: a * b,
        divide=lambda a, b, out=None: a / b,
        maximum=lambda a, b, out=None: xp.maximum(a, b),
        sqrt=lambda a, out=None: xp.sqrt(a),
        mask_mul=lambda a, cond, out=None: xp.where(cond, a, 0.0),
        sum0=lambda a, out=None: xp.sum(a, axis=0),
        total=xp.sum,
        tanh=lambda a, out=None: xp.tanh(a),
        sigmoid=lambda a, out=None: jax.nn.sigmoid(a),
        copy=lambda a, out=None: a,
        iadd=lambda a, b: a + b,
        isub=lambda a, b: a - b,
        imul=lambda a, b: a * b,
        slice_add=lambda a, lo, hi, v: a.at[..., lo:hi].add(v),
        slice_mul=lambda a, lo, hi, v: a.at[..., lo:hi].multiply(v),
        mutable=False,
        join=join,
    )


class JaxBackend(Backend):
    """JAX arrays on one ``jax.Device`` (a platform name like ``"cpu"``, ``"gpu:0"``, or a Device)."""

    name = "jax"
    extra = "jax"
    mutable = False

    @classmethod
    def resolve(cls, device: Any = None) -> JaxBackend:
        jax = import_library("jax", cls.extra)
        if device is None:
            dev = jax.devices()[0]
        elif isinstance(device, jax.Device):
            dev = device
        elif isinstance(device, str):
            platform, _, index = device.partition(":")
            platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
            try:
                dev = jax.devices(platform)[int(index) if index else 0]
            except (RuntimeError, ValueError, IndexError) as exc:
                raise ValueError(f"device: {device!r} is not a JAX device here ({exc})") from None
        else:
            raise ValueError(f"device: expected a jax.Device or a name like 'cpu' or 'gpu:0', got {device!r}")
        xp = importlib.import_module("jax.numpy")
        return cls(xp, dev, _ops(xp), is_gpu=dev.platform != "cpu")

    @classmethod
    def owns(cls, x: Any) -> bool:
        return bool(array_api_compat.is_jax_array(x))

    @classmethod
    def owns_namespace(cls, ns: Any) -> bool:
        return bool(array_api_compat.is_jax_namespace(ns))

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        import jax

        if not self.owns(x):
            # On the host: jax.numpy.asarray is compiled for every new shape (14 ms each, measured),
            # device_put is not.
            x = np.asarray(to_numpy(x), dtype=None if dtype is None else np.dtype(dtype))
            with jax.enable_x64(True):  # keep float64/int64 inputs as they are (no silent downcast)
                return jax.device_put(x, self.device)
        with jax.enable_x64(True):
            return jax.device_put(self.xp.asarray(x, dtype=dtype), self.device)

    @classmethod
    def scope_of(cls, x: Any) -> contextlib.AbstractContextManager[Any]:
        # 64-bit arrays exist inside the x64 scope only (outside it, reductions truncate to 32 bits).
        import jax

        return jax.enable_x64(np.dtype(x.dtype).itemsize == 8)

    def all_finite(self, x: Any) -> bool:
        # On the host: an eager reduction is compiled for every new shape (40 ms each, measured).
        return bool(np.isfinite(np.asarray(x)).all())

    def assign(self, target: Any, value: Any) -> Any:
        return value

    def copy(self, x: Any, into: Any = None) -> Any:
        return x

    def index_dtype(self, float_dtype_name: str) -> Any:
        # Class indices in int32 where that is the widest integer (outside the x64 scope).
        return self.xp.int64 if float_dtype_name == "float64" else self.xp.int32

    def accumulation_dtype(self, dtype_name: str) -> Any:
        # float32 networks run outside the x64 scope, where float64 does not exist.
        return self.xp.float64 if dtype_name == "float64" else self.xp.float32

    def precision(self, dtype_name: str) -> contextlib.AbstractContextManager[Any]:
        # Both ways: float64 inside the x64 scope, float32 outside it even when the user enabled
        # x64 globally (where Python floats and integer step counts would promote to float64).
        import jax

        return jax.enable_x64(dtype_name == "float64")

    @classmethod
    def compile(cls, fn: Callable[..., Any]) -> Callable[..., Any]:
        import jax

        return jax.jit(fn)

    def synchronize(self) -> None:
        import jax

        jax.effects_barrier()
