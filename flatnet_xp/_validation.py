"""Input checks at the public boundary: clear ValueError/TypeError before any work, nothing modified."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp._compat import array_namespace, to_numpy

__all__ = [
    "FLOAT_DTYPES",
    "as_data_array",
    "check_dtype",
    "check_finite",
    "check_int",
    "check_layer_sizes",
    "check_labels",
    "check_real",
    "describe",
]

FLOAT_DTYPES = ("float32", "float64")
#: Elements per chunk for whole-dataset scans: the temporaries stay a few MB whatever the data size.
CHUNK_ELEMENTS = 1 << 18


def describe(value: Any) -> str:
    """Short description of a value for error messages (type, and shape/dtype for arrays)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def check_int(name: str, value: Any, minimum: int) -> int:
    """An integer (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_real(
    name: str, value: Any, *, minimum: float = -math.inf, maximum: float = math.inf, open_min: bool = False
) -> float:
    """A finite real number in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``open_min``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    v = float(value)
    low_ok = v > minimum if open_min else v >= minimum
    if not (math.isfinite(v) and low_ok and v <= maximum):
        lo = "(" if open_min else "["
        raise ValueError(f"{name}: expected a finite number in {lo}{minimum}, {maximum}], got {value!r}")
    return v


def check_layer_sizes(sizes: Any) -> tuple[int, ...]:
    """At least two positive integer layer widths."""
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence | np.ndarray):
        raise TypeError(f"layer_sizes: expected a sequence of positive integers, got {describe(sizes)}")
    out = []
    for k, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"layer_sizes[{k}]: expected a positive integer, got {describe(s)}")
        if s < 1:
            raise ValueError(f"layer_sizes[{k}]: expected a positive integer, got {int(s)}")
        out.append(int(s))
    if len(out) < 2:
        raise ValueError(f"layer_sizes: expected at least 2 sizes (inputs and outputs), got {list(out)}")
    return tuple(out)


def check_dtype(dtype: Any) -> str:
    """Normalise a float dtype given by name, NumPy dtype or backend dtype to 'float32'/'float64'."""
    text = str(dtype).rsplit(".", 1)[-1] if dtype is not None else "None"
    if text in ("float", "double"):
        text = "float64"
    try:
        name = np.dtype(text).name
    except TypeError:
        name = text
    if name not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected one of {FLOAT_DTYPES}, got {dtype!r}")
    return name


def _dtype_kind(arr: Any) -> str:
    """'f' real float, 'i' integer, 'b' bool, 'c' complex, or 'O' anything else."""
    dt = arr.dtype
    if isinstance(dt, np.dtype):
        return dt.kind if dt.kind in "fiubc" else "O"
    name = str(dt).rsplit(".", 1)[-1]
    if name.startswith(("float", "bfloat")):
        return "f"
    if name.startswith(("int", "uint")):
        return "i"
    if name == "bool":
        return "b"
    if name.startswith("complex"):
        return "c"
    return "O"


def as_data_array(name: str, value: Any, *, ndims: tuple[int, ...] = (2,), numeric: str = "fiub") -> Any:
    """Accept an array of any supported backend (returned as is) or a nested sequence (NumPy).

    Checks dimensionality, non-emptiness and dtype kind, never copies a backend array.
    """
    if array_namespace(value) is None or isinstance(value, np.generic):
        if isinstance(value, str | bytes) or value is None:
            raise TypeError(f"{name}: expected a numeric array, got {describe(value)}")
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name}: expected a numeric array, got {describe(value)} ({exc})") from None
    kind = _dtype_kind(value)
    if kind == "u":
        kind = "i"
    if kind not in numeric:
        raise TypeError(f"{name}: expected a numeric (real) array, got {describe(value)}")
    if value.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name}: expected a {want} array, got {describe(value)}")
    if value.shape[0] == 0 or math.prod(value.shape) == 0:
        raise ValueError(f"{name}: expected non-empty data, got {describe(value)}")
    return value


def _chunks(arr: Any) -> Any:
    n = arr.shape[0]
    per_row = max(1, math.prod(arr.shape[1:]))
    step = max(1, CHUNK_ELEMENTS // per_row)
    for start in range(0, n, step):
        yield arr[start : min(start + step, n), ...]


def check_finite(name: str, arr: Any) -> None:
    """Raise ValueError if ``arr`` holds NaN or inf; scans in chunks (no dataset-sized temporary)."""
    if _dtype_kind(arr) != "f":
        return
    xp = array_namespace(arr)
    for chunk in _chunks(arr):
        # A sum is finite when every term is (one fast pass); only a non-finite sum, which an
        # overflow of large finite values can also give, needs the exact element-wise test.
        if not bool(xp.isfinite(xp.sum(chunk))) and not bool(xp.all(xp.isfinite(chunk))):
            raise ValueError(f"{name}: expected finite values, found NaN or inf")


def check_labels(name: str, labels: Any, n_classes: int) -> None:
    """1-D class labels: integers (or integral floats) in ``[0, n_classes)``; scanned in chunks."""
    kind = _dtype_kind(labels)
    if kind not in "fi":
        raise TypeError(f"{name}: expected integer class labels, got {describe(labels)}")
    for chunk in _chunks(labels):
        c = to_numpy(chunk)
        if kind == "f" and not bool(np.all(np.isfinite(c) & (c == np.round(c)))):
            raise ValueError(f"{name}: expected integer class labels, found non-integer values")
        lo, hi = c.min(), c.max()
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name}: expected class labels in [0, {n_classes - 1}] for {n_classes} outputs, "
                f"found {lo if lo < 0 else hi}"
            )
