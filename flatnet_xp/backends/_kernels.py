"""The kernel table every backend fills: operations that RETURN their result, written into ``out`` where the
library can.

Every kernel takes its inputs and an ``out`` array and returns the result. On NumPy, CuPy and PyTorch
the result IS ``out``, written in place through the library's own ``out=`` argument, which avoids a
temporary of the result's size (measured: the in-place update of a 25M-parameter buffer is ~2x faster
than ``p -= lr * g``, and ``np.multiply(d, z > 0)`` several times faster than the strict ``xp.where``
ReLU mask). The portable versions here (``out[...] = expression``) use only the Array API standard
and are what array-api-strict runs, so the whole test suite proves the portable path too. On JAX,
whose arrays are immutable, ``out`` is ignored and every kernel returns a new array: the same math,
written once as "each operation returns its result", then runs inside one compiled XLA program.

``out`` may always be ``None`` (a new array is returned); :data:`NO_OUT` stands for "no buffer" in
code that slices its buffers (``NO_OUT[:n]`` is ``NO_OUT``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_OUT", "Ops", "portable_ops", "stable_sigmoid"]

Fn = Callable[..., Any]


class _NoOut:
    """Placeholder buffer of immutable backends: slicing it gives itself, kernels ignore it."""

    def __getitem__(self, key: Any) -> _NoOut:
        return self

    def __repr__(self) -> str:
        return "NO_OUT"


#: "No preallocated buffer": what workspaces and scratch hold on immutable backends (JAX).
NO_OUT: Any = _NoOut()


@dataclass(frozen=True)
class Ops:
    """Kernels returning their result (see the module doc).

    Binary kernels are ``f(a, b, out) -> result`` (``b`` an array or a Python scalar), unary ones
    ``f(a, out) -> result``. ``iadd/isub/imul(a, b)`` update ``a`` itself (return it) on mutable
    backends and return ``a op b`` on JAX; ``slice_add/slice_mul(a, lo, hi, v)`` do the same for
    ``a[..., lo:hi]`` (the last axis: a flat buffer, or the rows of an ensemble's
    ``(E, n)`` buffer). ``total(a)`` is the sum of all elements as a 0-d array. ``mutable`` tells whether
    arrays can be written in place (views, preallocated buffers) or every result is new. ``join(parts)``
    is the flat concatenation of the parts (None: ``concat`` of their reshapes).
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
    total: Fn
    tanh: Fn
    sigmoid: Fn
    copy: Fn
    iadd: Fn
    isub: Fn
    imul: Fn
    slice_add: Fn
    slice_mul: Fn
    mutable: bool = True
    join: Fn | None = None


def stable_sigmoid(xp: Any, s: Any) -> Any:
    """Logistic function that never overflows: ``1/(1+e^-s)`` for ``s >= 0``, ``e^s/(1+e^s)`` below.

    Both branches use ``e = exp(-|s|) <= 1``, so no overflow warning for any float32/float64 input,
    and tiny outputs keep full relative precision (unlike ``0.5*(1+tanh(s/2))``). Returns a new array.
    """
    e = xp.exp(-xp.abs(s))
    r = 1.0 / (1.0 + e)
    return xp.where(s >= 0, r, e * r)


def portable_ops(xp: Any) -> Ops:
    """The Array API standard only: ``out[...] = expression`` (array-api-strict runs this)."""

    def store(value: Any, out: Any) -> Any:
        if out is None:
            return value
        out[...] = value
        return out

    def slice_add(a: Any, lo: int, hi: int, v: Any) -> Any:
        a[..., lo:hi] += v
        return a

    def slice_mul(a: Any, lo: int, hi: int, v: Any) -> Any:
        a[..., lo:hi] *= v
        return a

    def iadd(a: Any, b: Any) -> Any:
        a += b
        return a

    def isub(a: Any, b: Any) -> Any:
        a -= b
        return a

    def imul(a: Any, b: Any) -> Any:
        a *= b
        return a

    return Ops(
        matmul=lambda a, b, out=None: store(a @ b, out),
        add=lambda a, b, out=None: store(a + b, out),
        subtract=lambda a, b, out=None: store(a - b, out),
        multiply=lambda a, b, out=None: store(a * b, out),
        divide=lambda a, b, out=None: store(a / b, out),
        maximum=lambda a, b, out=None: store(xp.maximum(a, b), out),
        sqrt=lambda a, out=None: store(xp.sqrt(a), out),
        mask_mul=lambda a, cond, out=None: store(xp.where(cond, a, 0.0), out),
        sum0=lambda a, out=None: store(xp.sum(a, axis=0), out),
        total=xp.sum,
        tanh=lambda a, out=None: store(xp.tanh(a), out),
        sigmoid=lambda a, out=None: store(stable_sigmoid(xp, a), out),
        copy=lambda a, out=None: store(a, out) if out is not None else xp.asarray(a, copy=True),
        iadd=iadd,
        isub=isub,
        imul=imul,
        slice_add=slice_add,
        slice_mul=slice_mul,
    )
