"""Input checks at the public boundary: clear ValueError/TypeError before any work, nothing modified."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp.backends import array_namespace, array_scope, to_numpy

__all__ = [
    "FLOAT_DTYPES",
    "as_data_array",
    "check_dtype",
    "check_finite",
    "check_int",
    "check_labels",
    "check_layer_sizes",
    "check_probability_rows",
    "check_range",
    "check_real",
    "check_sample_weight",
    "describe",
    "is_sparse",
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
        raise ValueError(f"{name}: expected a finite number in {lo}{minimum}, {maximum}], got {v!r}")
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


def check_dtype(dtype: Any, name: str = "dtype") -> str:
    """``"float32"`` or ``"float64"`` from what NumPy, PyTorch and JAX users write.

    Accepts a name (``"float32"``, ``"float64"``, ``"float"``, ``"double"``, ``"single"``), a NumPy or
    JAX scalar type or dtype (``np.float32``, ``np.dtype("float64")``), a PyTorch or array-api-strict
    dtype (``torch.float32``), or the Python type ``float`` (float64).
    """
    text: str | None
    if dtype is float:
        text = "float64"
    elif isinstance(dtype, str):
        text = {"float": "float64", "double": "float64", "single": "float32"}.get(dtype.strip(), dtype.strip())
    elif isinstance(dtype, type | np.dtype) or (hasattr(dtype, "dtype") and isinstance(dtype.dtype, np.dtype)):
        try:
            text = np.dtype(dtype).name
        except TypeError:
            text = None
    else:  # torch.float32, array_api_strict.float32, ...: "<module>.float32"
        text = str(dtype).rsplit(".", 1)[-1] if "." in str(dtype) else None
    try:
        result = np.dtype(text).name if text else None
    except TypeError:
        result = None
    if result not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected float32 or float64 (a name, a NumPy, PyTorch or JAX dtype, or float), got {dtype!r}"
        )
    return str(result)


def _dtype_kind(arr: Any) -> str:
    """'f' real float, 'i' integer (signed or unsigned), 'b' bool, 'c' complex, or 'O' anything else."""
    dt = arr.dtype
    if isinstance(dt, np.dtype):
        return {"u": "i"}.get(dt.kind, dt.kind) if dt.kind in "fiubc" else "O"
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


def is_sparse(value: Any) -> bool:
    """True for scipy.sparse matrices and arrays (checked without importing scipy)."""
    return type(value).__module__.startswith("scipy.sparse")


def _torch_tensor(value: Any, name: str) -> Any:
    """A torch tensor usable as data: detached (no copy) if it requires grad; sparse ones refused."""
    if getattr(value, "layout", None) is not None and str(value.layout) != "torch.strided":
        raise TypeError(
            f"{name}: torch sparse tensors ({value.layout}) are not supported; pass X.to_dense(), or a "
            "scipy.sparse matrix (densified one batch at a time)"
        )
    if value.device.type == "meta":
        raise ValueError(
            f"{name}: a torch tensor of shape {tuple(value.shape)} on the meta device has no values; "
            "materialize it first"
        )
    return value.detach() if value.requires_grad else value


def as_data_array(
    name: str, value: Any, *, ndims: tuple[int, ...] = (2,), numeric: str = "fiub", sparse: bool = False
) -> Any:
    """Accept an array of any supported backend (returned as is) or a nested sequence (NumPy).

    Checks dimensionality, non-emptiness and dtype kind, never copies a backend array. A torch
    tensor that requires grad is detached (a view, no copy); with ``sparse=True`` a scipy.sparse
    matrix is accepted as it is (converted to CSR when it is in another format).
    """
    if is_sparse(value):
        if not sparse:
            raise TypeError(
                f"{name}: expected a dense array, got a scipy.sparse {type(value).__name__}; use .toarray()"
            )
        if value.format not in ("csr", "csc"):
            value = value.tocsr()
    elif type(value).__module__.startswith("torch"):
        value = _torch_tensor(value, name)
    elif array_namespace(value) is None or isinstance(value, np.generic):
        if isinstance(value, str | bytes) or value is None:
            raise TypeError(f"{name}: expected a numeric array, got {describe(value)}")
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name}: expected a numeric array, got {describe(value)} ({exc})") from None
    kind = _dtype_kind(value)
    if kind not in numeric:
        hint = ""
        if kind in "USO" and name.lower().startswith("y"):  # text labels
            hint = (
                "; for text class labels use flatnet_xp.sklearn.FlatMLPClassifier (it encodes them), or encode them as "
                "integers 0..k-1 and fit with loss='cross_entropy'"
            )
        raise TypeError(f"{name}: expected a numeric (real) array, got {describe(value)}{hint}")
    if len(value.shape) not in ndims:
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


def check_finite(name: str, arr: Any, dtype: np.dtype[Any] | None = None) -> None:
    """Raise ValueError if ``arr`` holds NaN or inf, or values beyond ``dtype``'s range.

    Scans in chunks (no dataset-sized temporary); a sparse matrix's stored values only. Values that
    the network's ``dtype`` cannot represent (float64 data above float32's maximum for a float32
    network) would turn into inf during training, so they are refused here.
    """
    if is_sparse(arr):
        arr = arr.data
        if arr.shape[0] == 0:
            return
    if _dtype_kind(arr) != "f":
        return
    xp = array_namespace(arr)
    narrow = None
    if dtype is not None and _itemsize(arr.dtype) > dtype.itemsize:
        narrow = getattr(xp, dtype.name)
    with np.errstate(over="ignore", invalid="ignore"), array_scope(arr):
        for chunk in _chunks(arr):
            # One fast pass: the sum of the chunk cast to the network's dtype is finite when every
            # value is finite and representable. Only a non-finite sum (which large finite values
            # can also give) needs the exact element-wise tests.
            cast = chunk if narrow is None else xp.astype(chunk, narrow)
            if bool(xp.isfinite(xp.sum(cast))):
                continue
            if not bool(xp.all(xp.isfinite(chunk))):
                raise ValueError(f"{name}: expected finite values, found NaN or inf")
            if narrow is not None and not bool(xp.all(xp.isfinite(cast))):
                assert dtype is not None  # narrow is set from it
                big = float(xp.max(xp.abs(chunk)))
                raise ValueError(
                    f"{name}: holds {big:.4g}, beyond the largest {dtype} value ({float(np.finfo(dtype).max):.4g}): "
                    f"it would overflow the network's {dtype}; rescale the data"
                    + (" or use dtype='float64'" if dtype.itemsize < 8 else "")
                )


def _itemsize(dtype: Any) -> int:
    """Bytes per element of a NumPy, PyTorch, JAX or array-api-strict float dtype."""
    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        return 8 if "64" in str(dtype) else 4 if "32" in str(dtype) else 2


def check_range(name: str, arr: Any, low: float, high: float | None, what: str) -> None:
    """Raise ValueError if ``arr`` has values outside ``[low, high]`` (``high=None``: no upper bound)."""
    xp = array_namespace(arr)
    for chunk in _chunks(arr):
        lo = float(xp.min(chunk))
        hi = float(xp.max(chunk))
        if lo < low or (high is not None and hi > high):
            bad = lo if lo < low else hi
            raise ValueError(f"{name}: expected {what}, found {bad!r}")


def check_sample_weight(name: str, weights: Any, n: int) -> np.ndarray:
    """Sample weights as a float64 NumPy vector of length ``n``: finite, ``>= 0``, not all zero.

    Every use of the weights is a weighted *average*, so they are returned divided by their maximum
    (a new array): weights near the float64 limit, whose sum would overflow, or so small that they
    underflow in float32, train exactly like the same weights rescaled.
    """
    w = as_data_array(name, weights, ndims=(1,), numeric="fiub")
    if w.shape[0] != n:
        raise ValueError(f"{name}: expected {n} weights (one per sample), got {describe(w)}")
    host = np.asarray(to_numpy(w), dtype=np.float64)
    if not np.all(np.isfinite(host)) or np.any(host < 0):
        raise ValueError(f"{name}: expected finite non-negative weights")
    if not np.any(host > 0):
        raise ValueError(f"{name}: expected at least one positive weight, all are zero")
    return host / host.max()


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
                f"found {float(lo if lo < 0 else hi):g}"
            )


def check_probability_rows(name: str, Y: Any) -> None:
    """Raise ValueError unless every row of ``Y`` is a probability vector: entries in ``[0, 1]``
    that sum to 1 (within ``1e-6`` for float64 data, ``1e-3`` for narrower floats). One-hot rows are.

    Cross-entropy against anything else is not a probability: its loss can be negative and its
    accuracy meaningless, so such targets are refused before training.
    """
    if _dtype_kind(Y) not in "fi":
        return
    check_range(name, Y, 0.0, 1.0, "probability rows (one-hot or entries in [0, 1] that sum to 1) for cross_entropy")
    tol = 1e-6 if _itemsize(Y.dtype) >= 8 else 1e-3
    for chunk in _chunks(Y):
        sums = np.asarray(to_numpy(chunk), dtype=np.float64).sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
        if bad.size:
            raise ValueError(
                f"{name}: expected probability rows (one-hot or entries in [0, 1] that sum to 1) for cross_entropy, "
                f"found a row summing to {float(sums[bad[0]]):.6g}; pass integer class labels or normalize the rows"
            )
