"""Validated training data that hands out batches on the network's backend without copying the dataset."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

from flatnet_xp._validation import (
    as_data_array,
    check_finite,
    check_labels,
    check_probability_rows,
    check_range,
    check_sample_weight,
    describe,
    is_sparse,
)
from flatnet_xp.backends import Backend, array_namespace, to_numpy

if TYPE_CHECKING:
    from flatnet_xp.losses import Loss

__all__ = ["Dataset", "check_features", "normalized_weights", "one_hot"]


def check_features(X: Any, n_features: int, name: str = "X") -> Any:
    """A non-empty 2-D numeric array (or scipy.sparse matrix) of width ``n_features``.

    Returned as given (lists become NumPy, torch tensors that require grad are detached).
    """
    try:
        X = as_data_array(name, X, ndims=(2,), sparse=True)
    except ValueError as exc:
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 1 and shape[0] == n_features:
            raise ValueError(f"{exc}; for one sample pass {name}.reshape(1, -1) (a batch of one row)") from None
        raise
    if X.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features (columns), got {describe(X)}")
    return X


def _is_native(backend: Backend, arr: Any, dtype: Any) -> bool:
    """True when ``arr`` can be used as is: same library, dtype and device as the network."""
    if not backend.owns(arr) or arr.dtype != dtype:
        return False
    return bool(array_api_compat.device(arr) == backend.device)


def one_hot(xp: Any, labels: Any, classes: Any, dtype: Any) -> Any:
    """Rows of ``classes == label`` in ``dtype``: integer labels ``(m,)`` to one-hot targets ``(m, k)``.

    ``classes`` is ``arange(k)`` in the index dtype the labels are compared in. The one preparation
    of class labels: the eager steps call it per batch, the compiled epoch inside its program.
    """
    return xp.astype(xp.astype(labels, classes.dtype)[:, None] == classes, dtype)


def normalized_weights(xp: Any, w: Any, mean: Any) -> Any:
    """Sample weights divided by ``mean`` (their mean over the batch or the dataset), zeros when it
    is 0: the one preparation of sample weights, on the host per batch or inside a compiled epoch."""
    return xp.where(mean > 0, w / xp.where(mean > 0, mean, 1.0), 0.0)


def _gatherer(arr: Any) -> Callable[[Any], Any]:
    """``take(idx)``: rows ``idx`` (a slice or an int64 NumPy index array) of a backend array or a
    sparse matrix, chosen once per array (NumPy and scipy.sparse index directly). The namespace and
    device of other arrays are looked up at the first index array (a compiled epoch never needs them)."""
    if isinstance(arr, np.ndarray) or is_sparse(arr):
        return arr.__getitem__
    where: list[Any] = []

    def take(idx: Any) -> Any:
        if isinstance(idx, slice):
            return arr[idx, ...]
        if not where:
            where.extend((array_namespace(arr), array_api_compat.device(arr)))
        xp, dev = where
        return xp.take(arr, xp.asarray(idx, device=dev), axis=0)

    return take


def _gather(arr: Any, idx: Any) -> Any:
    """Rows ``idx`` of ``arr`` (see :func:`_gatherer`)."""
    return _gatherer(arr)(idx)


class Dataset:
    """Features, targets and sample weights checked once, then gathered batch by batch.

    Integer class labels (for cross-entropy) are turned into one-hot rows per batch; data already
    on the network's backend in its dtype is sliced without any conversion; a scipy.sparse ``X`` is
    densified one batch at a time. The dataset itself is never copied: a shuffled batch is gathered
    by index.

    Parameters
    ----------
    backend : Backend
    dtype_name : {"float32", "float64"}
        The network's dtype.
    X : array or scipy.sparse matrix, shape (n, n_features)
    Y : array, shape (n, n_outputs), or (n,) for one output or for class labels
    n_features, n_outputs : int
    loss : Loss
        Decides how targets are validated (labels, ``[0, 1]``, non-negative counts).
    sample_weight : array, shape (n,), optional
        Non-negative finite weights, not all zero.
    check_values : bool
        Scan for NaN/inf, values that overflow the network's dtype, and target ranges in chunks;
        ``fit`` does, forward-only paths need not.
    names : (str, str, str)
        Argument names used in error messages.
    """

    def __init__(
        self,
        backend: Backend,
        dtype_name: str,
        X: Any,
        Y: Any,
        n_features: int,
        n_outputs: int,
        loss: Loss,
        *,
        sample_weight: Any = None,
        check_values: bool = True,
        names: tuple[str, str, str] = ("X", "Y", "sample_weight"),
    ) -> None:
        name_x, name_y, name_w = names
        X = check_features(X, n_features, name_x)
        Y = as_data_array(name_y, Y, ndims=(1, 2))
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"{name_y}: expected {X.shape[0]} rows to match {name_x}, got {describe(Y)}")
        self.labels = loss.targets == "classes" and Y.ndim == 1
        if self.labels:
            if n_outputs < 2:
                raise ValueError(
                    f"{name_y}: cross_entropy with class labels needs at least 2 outputs, the network has 1"
                )
            check_labels(name_y, Y, n_outputs)
        else:
            if Y.ndim == 1 and n_outputs == 1:
                Y = Y[:, None]
            if Y.ndim != 2 or Y.shape[1] != n_outputs:
                if loss.name == "mse" and Y.ndim == 1 and _looks_like_labels(Y):
                    raise ValueError(
                        f"{name_y}: expected targets of shape (n, {n_outputs}) for loss='mse', got {describe(Y)}, "
                        "which looks like class labels: use loss='cross_entropy' with one output per class "
                        "(or FlatMLPClassifier, which also takes text labels)"
                    )
                what = "class labels (1-D) or " if loss.targets == "classes" else ""
                raise ValueError(f"{name_y}: expected {what}targets of shape (n, {n_outputs}), got {describe(Y)}")
        np_dtype = np.dtype(dtype_name)
        dtype = getattr(backend.xp, dtype_name)
        key = (np_dtype.name, loss.targets, n_outputs, self.labels)
        if check_values and not _IMMUTABLE_CHECKED.seen(key, X, Y):
            check_finite(name_x, X, np_dtype)
            if not self.labels:
                check_finite(name_y, Y, np_dtype)
                if loss.targets == "binary":
                    check_range(name_y, Y, 0.0, 1.0, f"targets in [0, 1] for loss={loss.name!r}")
                elif loss.targets == "counts":
                    check_range(name_y, Y, 0.0, None, f"non-negative targets for loss={loss.name!r}")
                elif loss.targets == "classes":
                    check_probability_rows(name_y, Y)
            _IMMUTABLE_CHECKED.add(key, X, Y)
        self.sample_weight = None if sample_weight is None else check_sample_weight(name_w, sample_weight, X.shape[0])
        self.backend, self.dtype, self.n_outputs = backend, dtype, n_outputs
        self.X, self.Y = X, Y
        self.n = int(X.shape[0])
        self._sparse = is_sparse(X)
        self._x_native = not self._sparse and _is_native(backend, X, dtype)
        self._y_native = not self.labels and _is_native(backend, Y, dtype)
        self._take_x, self._take_y = _gatherer(X), _gatherer(Y)
        index = backend.index_dtype(dtype_name)
        self._index_dtype = index
        self._classes = None
        if self.labels:
            with backend.precision(dtype_name):  # JAX: int64 exists inside the float64 scope only
                self._classes = backend.xp.arange(n_outputs, dtype=index, device=backend.device)
        self._ss_tot: np.ndarray | None = None

    @classmethod
    def features_only(cls, backend: Backend, dtype_name: str, X: Any) -> Dataset:
        """A dataset of already checked features only (for :meth:`batch_x`)."""
        self = cls.__new__(cls)
        self.backend, self.dtype, self.X = backend, getattr(backend.xp, dtype_name), X
        self._sparse = is_sparse(X)
        self._x_native = not self._sparse and _is_native(backend, X, self.dtype)
        self._take_x = _gatherer(X)
        return self

    def batch_x(self, idx: slice | np.ndarray) -> Any:
        """Features of rows ``idx`` as a backend array ``(m, n_features)`` in the network's dtype."""
        x = self._take_x(idx)
        if self._x_native:
            return x
        if self._sparse:
            x = x.toarray()
        return self.backend.asarray(x, dtype=self.dtype)

    def batch(self, idx: slice | np.ndarray, normalize: str = "batch") -> tuple[Any, Any, Any]:
        """Rows ``idx`` (a slice, or an int64 NumPy index array) as backend arrays ``(x, y, sw)``.

        ``x`` is ``(m, n_features)``, ``y`` is ``(m, n_outputs)`` in the network's dtype, ``sw`` None
        or ``(m, 1)`` sample weights divided by their mean over the batch (``normalize="batch"``: each
        batch's loss is the weighted average over its samples) or over the whole dataset
        (``"global"``: batch losses that add up to the dataset's weighted average).
        """
        be = self.backend
        x = self.batch_x(idx)
        y = self._take_y(idx)
        if self.labels:
            y = one_hot(be.xp, be.asarray(y), self._classes, self.dtype)
        elif not self._y_native:
            y = be.asarray(y, dtype=self.dtype)
        sw = None
        if self.sample_weight is not None:
            w = self.sample_weight[idx]
            w = normalized_weights(np, w, w.mean() if normalize == "batch" else self._mean_weight)
            sw = be.asarray(w[:, None], dtype=self.dtype)
        return x, y, sw

    @property
    def _mean_weight(self) -> float:
        assert self.sample_weight is not None
        return float(self.sample_weight.mean())

    def total_sum_of_squares(self) -> np.ndarray:
        """Per output, ``sum_i w_i (y_i - mean_w(y))^2`` with the globally normalised weights of
        :meth:`batch` (the denominator of R^2); computed once, in chunks, on the host."""
        if self._ss_tot is None:
            w = None if self.sample_weight is None else self.sample_weight / self._mean_weight
            step = max(1, (1 << 18) // max(1, self.n_outputs))
            sums = np.zeros(self.n_outputs)
            for lo in range(0, self.n, step):
                y = np.asarray(self.host_rows(self.Y, slice(lo, min(lo + step, self.n))), dtype=np.float64)
                sums += y.sum(axis=0) if w is None else (w[lo : lo + y.shape[0], None] * y).sum(axis=0)
            mean = sums / self.n
            ss = np.zeros(self.n_outputs)
            for lo in range(0, self.n, step):
                y = np.asarray(self.host_rows(self.Y, slice(lo, min(lo + step, self.n))), dtype=np.float64)
                d2 = (y - mean) ** 2
                ss += d2.sum(axis=0) if w is None else (w[lo : lo + y.shape[0], None] * d2).sum(axis=0)
            self._ss_tot = ss
        return self._ss_tot

    def host_rows(self, arr: Any, idx: Any) -> np.ndarray:
        """Rows of ``arr`` (X or Y of this dataset) as NumPy, densified (for hashing and metrics)."""
        part = _gather(arr, idx)
        return part.toarray() if is_sparse(part) else np.asarray(to_numpy(part))


class _CheckedArrays:
    """Immutable (JAX) arrays whose values passed the checks: they cannot change, so a later ``fit``
    on the same arrays skips the scan (a few hundred microseconds of dispatches for small data).

    Remembers the last :data:`SIZE` pairs by identity with weak references (a dead array never
    matches, whatever id its successor gets).
    """

    SIZE = 64

    def __init__(self) -> None:
        self._pairs: dict[tuple[Any, ...], tuple[Any, Any]] = {}

    @staticmethod
    def _key(key: tuple[Any, ...], X: Any, Y: Any) -> tuple[Any, ...]:
        return (key, id(X), id(Y))

    def seen(self, key: tuple[Any, ...], X: Any, Y: Any) -> bool:
        refs = self._pairs.get(self._key(key, X, Y))
        return refs is not None and refs[0]() is X and refs[1]() is Y

    def add(self, key: tuple[Any, ...], X: Any, Y: Any) -> None:
        if not (array_api_compat.is_jax_array(X) and array_api_compat.is_jax_array(Y)):
            return
        if len(self._pairs) >= self.SIZE:
            self._pairs.pop(next(iter(self._pairs)))
        self._pairs[self._key(key, X, Y)] = (weakref.ref(X), weakref.ref(Y))


_IMMUTABLE_CHECKED = _CheckedArrays()


def _looks_like_labels(Y: Any) -> bool:
    """Integer-valued 1-D targets with a few distinct values (checked on at most 10,000 of them)."""
    sample = np.asarray(to_numpy(Y[: min(int(Y.shape[0]), 10_000)]))
    if sample.dtype.kind in "iub":
        return True
    return bool(np.all(np.isfinite(sample)) and np.all(sample == np.round(sample)) and len(np.unique(sample)) <= 20)
