"""Inference of every member at once: outputs ``(E, n, L_out)``, their mean and spread, probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from flatnet_xp._data import Dataset, check_features
from flatnet_xp._validation import check_finite, describe
from flatnet_xp.activations import sigmoid
from flatnet_xp.backends import to_numpy
from flatnet_xp.ensemble import _math as M
from flatnet_xp.metrics import raise_overflow

__all__ = ["Inference", "softmax_last"]

#: Floats of one inference chunk's activations ``(E, rows, width)``.
_PREDICT_FLOATS = 1 << 22


class Inference:
    """The inference methods of :class:`~flatnet_xp.FlatEnsemble` (which provides the attributes used)."""

    n_models: int
    dtype_name: str
    _backend: Any
    _layout: Any
    _spec: Any

    @property
    def xp(self) -> Any:
        """The Array API namespace of the buffer."""
        return self._backend.xp

    def _views(self) -> M.Views:
        raise NotImplementedError

    def _forward_members(self, data: Dataset, chunk_floats: int = _PREDICT_FLOATS, host: bool = True) -> Any:
        """Every member's outputs ``(E, n, L_n)``: float64 NumPy (``host``) or a backend array."""
        e, n, xp, be = self.n_models, int(data.X.shape[0]), self.xp, self._backend
        step = max(1, chunk_floats // (e * max(self._layout.sizes)))
        views = self._views()
        parts = []
        with be.precision(self.dtype_name):
            for lo in range(0, n, step):
                x = data.batch_x(slice(lo, min(lo + step, n)))
                ws = M.Workspace(self._spec, e, int(x.shape[0]))
                z = M.forward(self._spec, views, x, ws)
                parts.append(np.asarray(to_numpy(z), dtype=np.float64) if host else be.copy(z))
            if host:
                return np.concatenate(parts, axis=1)
            return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)

    def forward_members(self, X: Any) -> Any:
        """Raw outputs of every member, shape ``(E, n, L_n)`` (backend array)."""
        X = check_features(X, self._layout.sizes[0])
        check_finite("X", X, np.dtype(self.dtype_name))
        data = Dataset.features_only(self._backend, self.dtype_name, X)
        out = self._forward_members(data, host=False)
        xp = self.xp
        with self._backend.precision(self.dtype_name):
            if not bool(xp.all(xp.isfinite(out))):
                raise_overflow(self.dtype_name, "X")
        return out

    def predict(self, X: Any, *, members: bool = False, return_std: bool = False) -> Any:
        """The members' mean output ``(n, L_n)`` (backend array).

        Parameters
        ----------
        members : bool
            Return every member's outputs ``(E, n, L_n)`` instead.
        return_std : bool
            Also return the members' standard deviation ``(n, L_n)`` (population, ``ddof=0``).
        """
        if not isinstance(members, bool) or not isinstance(return_std, bool):
            raise TypeError(f"members, return_std: expected bools, got {describe(members)}, {describe(return_std)}")
        if members and return_std:
            raise ValueError("return_std: not with members=True (which returns every member's outputs)")
        z = self.forward_members(X)
        if members:
            return z
        xp = self.xp
        with self._backend.precision(self.dtype_name):
            mean = xp.mean(z, axis=0)
            if return_std:
                return mean, xp.std(z, axis=0)
        return mean

    def predict_proba(self, X: Any) -> Any:
        """The mean over members of their probabilities (softmax, or sigmoid for one output), ``(n, L_n)``."""
        z = self.forward_members(X)
        xp = self.xp
        with self._backend.precision(self.dtype_name):
            p = sigmoid(xp, z) if z.shape[-1] == 1 else softmax_last(xp, z)
            return xp.mean(p, axis=0)

    def predict_class(self, X: Any) -> Any:
        """Class of the mean probabilities: argmax, or ``p > 0.5`` for one output; shape ``(n,)``."""
        p = self.predict_proba(X)
        xp = self.xp
        with self._backend.precision(self.dtype_name):
            if p.shape[-1] == 1:
                return xp.astype(p[:, 0] > 0.5, self._backend.index_dtype(self.dtype_name))
            return xp.argmax(p, axis=1)


def softmax_last(xp: Any, z: Any) -> Any:
    """Softmax over the last axis (max-shifted)."""
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)
