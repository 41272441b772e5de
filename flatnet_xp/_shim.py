"""The one fast-path shim: ``out=`` kernels on NumPy, CuPy and PyTorch, portable spellings elsewhere.

Every function takes its inputs and an ``out`` array, writes the result into ``out`` and returns it.
On NumPy/CuPy/PyTorch the library's own ``out=`` argument avoids a temporary of the result's size
(measured: the in-place update of a 25M-parameter buffer is ~2x faster than ``p -= lr * g``, and
``np.multiply(d, z > 0)`` is several times faster than the strict ``xp.where`` ReLU mask). The portable
versions (``out[...] = expression``) use only the Array API standard and are what array-api-strict
runs, so the whole test suite proves the portable path too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Ops", "make_ops"]

Fn = Callable[..., Any]


@dataclass(frozen=True)
class Ops:
    """Kernels writing into ``out``: ``f(a, b, out) -> out`` (binary) or ``f(a, out) -> out``.

    ``b`` may be an array or a Python scalar; ``cond`` in ``mask_mul`` is a boolean array.
    """

    matmul: Fn
    add: Fn
    subtract: Fn
    multiply: Fn
    divide: Fn
    maximum: Fn
    sqrt: Fn
    mask_mul: Fn
    sum0: Fn
    copy: Fn
    fast: bool


def _portable(xp: Any) -> Ops:
    def matmul(a: Any, b: Any, out: Any) -> Any:
        out[...] = a @ b
        return out

    def add(a: Any, b: Any, out: Any) -> Any:
        out[...] = a + b
        return out

    def subtract(a: Any, b: Any, out: Any) -> Any:
        out[...] = a - b
        return out

    def multiply(a: Any, b: Any, out: Any) -> Any:
        out[...] = a * b
        return out

    def divide(a: Any, b: Any, out: Any) -> Any:
        out[...] = a / b
        return out

    def maximum(a: Any, b: Any, out: Any) -> Any:
        out[...] = xp.maximum(a, b)
        return out

    def sqrt(a: Any, out: Any) -> Any:
        out[...] = xp.sqrt(a)
        return out

    def mask_mul(a: Any, cond: Any, out: Any) -> Any:
        out[...] = xp.where(cond, a, 0.0)
        return out

    def sum0(a: Any, out: Any) -> Any:
        out[...] = xp.sum(a, axis=0)
        return out

    def copy(a: Any, out: Any) -> Any:
        out[...] = a
        return out

    return Ops(matmul, add, subtract, multiply, divide, maximum, sqrt, mask_mul, sum0, copy, fast=False)


def _ufuncs(np_like: Any) -> Ops:
    """NumPy and CuPy share the ufunc ``out=`` convention."""

    def sum0(a: Any, out: Any) -> Any:
        return np_like.sum(a, axis=0, out=out)

    def copy(a: Any, out: Any) -> Any:
        np_like.copyto(out, a)
        return out

    return Ops(
        matmul=np_like.matmul,
        add=np_like.add,
        subtract=np_like.subtract,
        multiply=np_like.multiply,
        divide=np_like.divide,
        maximum=np_like.maximum,
        sqrt=np_like.sqrt,
        mask_mul=np_like.multiply,
        sum0=sum0,
        copy=copy,
        fast=True,
    )


def _torch(torch: Any) -> Ops:
    def binary(fn: Fn) -> Fn:
        def op(a: Any, b: Any, out: Any) -> Any:
            return fn(a, b, out=out)

        return op

    def maximum(a: Any, b: Any, out: Any) -> Any:
        if not isinstance(b, torch.Tensor):
            return torch.clamp_min(a, b, out=out)
        return torch.maximum(a, b, out=out)

    def sqrt(a: Any, out: Any) -> Any:
        return torch.sqrt(a, out=out)

    def sum0(a: Any, out: Any) -> Any:
        return torch.sum(a, dim=0, out=out)

    def copy(a: Any, out: Any) -> Any:
        return out.copy_(a)

    return Ops(
        matmul=binary(torch.matmul),
        add=binary(torch.add),
        subtract=binary(torch.sub),
        multiply=binary(torch.mul),
        divide=binary(torch.div),
        maximum=maximum,
        sqrt=sqrt,
        mask_mul=binary(torch.mul),
        sum0=sum0,
        copy=copy,
        fast=True,
    )


def make_ops(name: str, native: Any, xp: Any) -> Ops:
    """Build the shim for backend ``name`` (``native`` is the library module, ``xp`` its namespace)."""
    if name in ("numpy", "cupy"):
        return _ufuncs(native)
    if name == "torch":
        return _torch(native)
    return _portable(xp)
