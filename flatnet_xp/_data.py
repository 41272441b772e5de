"""Validated training data that hands out batches on the network's backend without copying the dataset."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from flatnet_xp._compat import Backend, array_namespace
from flatnet_xp._validation import as_data_array, check_finite, check_labels, describe

__all__ = ["Dataset", "check_features"]


def check_features(X: Any, n_features: int, name: str = "X") -> Any:
    """A non-empty 2-D numeric array of width ``n_features`` (returned as given; lists become NumPy)."""
    X = as_data_array(name, X, ndims=(2,))
    if X.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features (columns), got {describe(X)}")
    return X


def _is_native(backend: Backend, arr: Any, dtype: Any) -> bool:
    """True when ``arr`` can be used as is: same library, dtype and device as the network."""
    if not backend.owns(arr) or arr.dtype != dtype:
        return False
    return bool(array_api_compat.device(arr) == backend.device)


class Dataset:
    """Features and targets checked once, then gathered batch by batch.

    Integer class labels (for cross-entropy) are turned into one-hot rows per batch; data already
    on the network's backend in its dtype is sliced without any conversion. The dataset itself is
    never copied: a shuffled batch is gathered by index.

    Parameters
    ----------
    backend : Backend
    dtype : dtype of the network's backend
    X : array, shape (n, n_features)
    Y : array, shape (n, n_outputs), or (n,) for one output or for class labels
    n_outputs : int
    loss : str
    check_values : bool
        Scan for NaN/inf (and label range) in chunks; fit does, forward-only paths don't need to.
    name_x, name_y : str
        Argument names used in error messages.
    """

    def __init__(
        self,
        backend: Backend,
        dtype: Any,
        X: Any,
        Y: Any,
        n_features: int,
        n_outputs: int,
        loss: str,
        *,
        check_values: bool = True,
        name_x: str = "X",
        name_y: str = "Y",
    ) -> None:
        X = check_features(X, n_features, name_x)
        Y = as_data_array(name_y, Y, ndims=(1, 2))
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"{name_y}: expected {X.shape[0]} rows to match {name_x}, got {describe(Y)}")
        self.labels = loss == "cross_entropy" and Y.ndim == 1
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
                what = "class labels (1-D) or " if loss == "cross_entropy" else ""
                raise ValueError(f"{name_y}: expected {what}targets of shape (n, {n_outputs}), got {describe(Y)}")
        if check_values:
            check_finite(name_x, X)
            if not self.labels:
                check_finite(name_y, Y)
        self.backend, self.dtype, self.n_outputs = backend, dtype, n_outputs
        self.X, self.Y = X, Y
        self.n = int(X.shape[0])
        self._x_native = _is_native(backend, X, dtype)
        self._y_native = not self.labels and _is_native(backend, Y, dtype)
        self._classes = backend.xp.arange(n_outputs, device=backend.device) if self.labels else None

    def _gather(self, arr: Any, idx: Any) -> Any:
        if isinstance(idx, slice):
            return arr[idx, ...]
        if isinstance(arr, np.ndarray):
            return arr[idx]
        xp = array_namespace(arr)
        return xp.take(arr, xp.asarray(idx, device=array_api_compat.device(arr)), axis=0)

    def batch(self, idx: slice | np.ndarray) -> tuple[Any, Any]:
        """Rows ``idx`` (a slice, or an int64 NumPy index array) as backend arrays ``(x, y)``.

        ``x`` has shape ``(m, n_features)``; ``y`` is ``(m, n_outputs)`` in the network's dtype.
        """
        be = self.backend
        x = self._gather(self.X, idx)
        if not self._x_native:
            x = be.asarray(x, dtype=self.dtype)
        y = self._gather(self.Y, idx)
        if self.labels:
            xp = be.xp
            labels = xp.astype(be.asarray(y), xp.int64)
            y = xp.astype(labels[:, None] == self._classes, self.dtype)
        elif not self._y_native:
            y = be.asarray(y, dtype=self.dtype)
        return x, y
