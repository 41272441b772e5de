"""``FlatMLP``: a multilayer perceptron whose parameters live in ONE flat buffer on any Array API backend."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

from flatnet_xp._compat import get_backend, to_numpy
from flatnet_xp._data import Dataset, check_features
from flatnet_xp._validation import as_data_array, check_dtype, check_int, describe
from flatnet_xp.activations import ACTIVATIONS, sigmoid
from flatnet_xp.layout import Layout
from flatnet_xp.losses import CLASSIFICATION_LOSSES, LOSSES, Loss, softmax
from flatnet_xp.metrics import mean_over_batches, r2_score

if TYPE_CHECKING:
    from flatnet_xp.training import History

__all__ = ["FlatMLP", "check_loss"]

#: Rows per chunk in ``predict``: bounds the activation buffers whatever the size of ``X``.
PREDICT_BATCH = 4096
_MAX_WORKSPACES = 4
#: Slots after the flat gradient reserved for data-parallel control values.
GRAD_EXTRA_SLOTS = 4


def check_loss(loss: Any) -> Loss:
    """Look up a loss by name, with a clear error for anything else."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {loss!r}")
    return LOSSES[loss]


def _check_activations(activations: Any, n_layers: int) -> tuple[str, ...]:
    if isinstance(activations, str):
        names: Sequence[Any] = [activations] * n_layers
    elif isinstance(activations, Sequence):
        names = list(activations)
        if len(names) != n_layers:
            raise ValueError(
                f"activations: expected one name or {n_layers} names (one per weight layer), "
                f"got {len(names)}: {names!r}"
            )
    else:
        raise TypeError(f"activations: expected a name or a list of names, got {describe(activations)}")
    for name in names:
        if name not in ACTIVATIONS:
            raise ValueError(f"activations: expected names from {sorted(ACTIVATIONS)}, got {name!r}")
    return tuple(names)


class _Workspace:
    """Activation and delta buffers for one batch size, allocated once and reused every step."""

    def __init__(self, xp: Any, device: Any, dtype: Any, n: int, sizes: Sequence[int], n_params: int) -> None:
        self.acts = [xp.empty((n, w), dtype=dtype, device=device) for w in sizes[1:]]
        self.deltas = [xp.empty((n, w), dtype=dtype, device=device) for w in sizes[1:]]
        self.deltas_t = [xp.matrix_transpose(d) for d in self.deltas]
        #: Sum the gradient directly (cheap for small nets) or through the row-sum identity.
        # (direct: O(params) reads; identity: about 2 * batch * sum(sizes) reads)
        self.direct_sum = n_params <= max(1 << 16, 2 * n * sum(sizes))


class FlatMLP:
    """Multilayer perceptron with all weights in one flat array ``w`` and all biases in ``b``.

    ``w`` and ``b`` are views of ONE parameter buffer; layer ``k``'s matrix ``weight(k)`` (shape
    ``(L_{k+1}, L_k)``, PyTorch's ``nn.Linear.weight`` layout) and ``bias(k)`` are zero-copy views
    made once, so an optimizer step is a few whole-buffer operations whatever the depth.
    Forward, backward and updates are written once against the Array API standard.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths, input first: ``[L_1, ..., L_n]``, at least two.
    activations : str or sequence of str, default "sigmoid"
        One of ``sigmoid, tanh, relu, leaky_relu, identity`` for every weight layer, or one name per
        weight layer. Use ``identity`` on the last layer for logits (cross-entropy, bce).
    backend : str or namespace, default "numpy"
        ``"numpy"``, ``"cupy"``, ``"torch"`` or ``"array_api_strict"`` (or their namespaces).
        Mutable libraries only: JAX and Dask are refused, with the reason.
    dtype : str, default "float32"
        ``"float32"`` or ``"float64"``.
    seed : int or None, default None
        Seed of the host ``numpy.random.Generator`` that draws the initial weights, so one seed gives
        identical starting weights on every backend. Weights: Glorot/Xavier uniform
        ``U(-a, a), a = sqrt(6/(fan_in+fan_out))`` for sigmoid, tanh and identity layers; He/Kaiming
        uniform ``a = sqrt(6/fan_in)`` for relu and leaky_relu layers. Biases: zero.
    device : optional
        Backend device (torch: ``"cpu"``, ``"cuda:0"``; cupy: device id). Default: the library's.

    Examples
    --------
    >>> import numpy as np, flatnet_xp as fx
    >>> net = fx.FlatMLP([4, 8, 3], activations=["relu", "identity"], dtype="float64", seed=0)
    >>> net.layout.w_len, net.layout.b_len
    (56, 11)
    >>> net.forward(np.zeros((2, 4))).shape
    (2, 3)
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activations: str | Sequence[str] = "sigmoid",
        *,
        backend: str | ModuleType = "numpy",
        dtype: str = "float32",
        seed: int | None = None,
        device: Any = None,
    ) -> None:
        self.layout = Layout(layer_sizes)
        self.activations = _check_activations(activations, self.layout.n_layers)
        self.dtype_name = check_dtype(dtype)
        if seed is not None:
            check_int("seed", seed, 0)
        self._be = get_backend(backend, device)
        self._device_arg = device
        xp = self._be.xp
        self.dtype = getattr(xp, self.dtype_name)
        self._allocate()
        self._check_writeable()
        self.set_params(*self._initial_params(seed))
        self.loss_: str | None = None
        self.history_: History | None = None

    # ----------------------------------------------------------------- buffers and views
    def _allocate(self) -> None:
        xp, dev, lay = self._be.xp, self._be.device, self.layout
        n = lay.n_params
        self.params = xp.zeros(n, dtype=self.dtype, device=dev)
        # Spare slots after the gradient: the loss and control flags ride along in the ONE
        # collective of a data-parallel step (flatnet_xp.distributed).
        self._grad_parent = xp.zeros(n + GRAD_EXTRA_SLOTS, dtype=self.dtype, device=dev)
        self.grads = self._grad_parent[:n]
        self._w, self._b = self.params[: lay.w_len], self.params[lay.w_len :]
        self._dw, self._db = self.grads[: lay.w_len], self.grads[lay.w_len :]
        shapes = lay.shapes

        def views(flat_w: Any, flat_b: Any) -> tuple[list[Any], list[Any]]:
            ws = [xp.reshape(flat_w[lay.w_slice(k)], shapes[k], copy=False) for k in range(lay.n_layers)]
            bs = [flat_b[lay.b_slice(k)] for k in range(lay.n_layers)]
            return ws, bs

        self._W, self._B = views(self._w, self._b)
        self._dW, self._dB = views(self._dw, self._db)
        self._Wt = [xp.matrix_transpose(W) for W in self._W]
        self._acts = [ACTIVATIONS[a] for a in self.activations]
        self._workspaces: dict[int, _Workspace] = {}

    def _check_writeable(self) -> None:
        if not array_api_compat.is_writeable_array(self.params):
            raise ValueError(
                f"backend: {self._be.name} arrays are not writeable; flatnet_xp updates layer views in place"
            )

    def _initial_params(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        parts = []
        for (n_out, n_in), act in zip(self.layout.shapes, self.activations, strict=True):
            fan = n_in if act in ("relu", "leaky_relu") else n_in + n_out
            bound = math.sqrt(6.0 / fan)
            parts.append(rng.uniform(-bound, bound, size=n_out * n_in))
        return np.concatenate(parts), np.zeros(self.layout.b_len)

    def _workspace(self, n: int) -> _Workspace:
        ws = self._workspaces.get(n)
        if ws is None:
            be = self._be
            ws = _Workspace(be.xp, be.device, self.dtype, n, self.layout.sizes, self.layout.n_params)
            if n <= PREDICT_BATCH:  # keep small ones for reuse; a one-off huge forward is not kept
                if len(self._workspaces) >= _MAX_WORKSPACES:
                    self._workspaces.pop(next(iter(self._workspaces)))
                self._workspaces[n] = ws
        return ws

    # ----------------------------------------------------------------- public parameter access
    @property
    def backend(self) -> str:
        """Name of the backend (``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``)."""
        return self._be.name

    @property
    def device(self) -> Any:
        return self._be.device

    @property
    def xp(self) -> Any:
        """The Array API namespace of the network's arrays."""
        return self._be.xp

    @property
    def w(self) -> Any:
        """All weights, shape ``(w_len,)``: a view of the parameter buffer."""
        return self._w

    @property
    def b(self) -> Any:
        """All biases, shape ``(b_len,)``: a view of the parameter buffer."""
        return self._b

    def _check_layer(self, k: Any) -> int:
        n = self.layout.n_layers
        if isinstance(k, bool) or not isinstance(k, int) or not -n <= k < n:
            raise IndexError(f"k: expected a weight-layer index in [0, {n - 1}], got {k!r}")
        return k % n

    def weight(self, k: int) -> Any:
        """Layer ``k``'s weights, shape ``(L_{k+1}, L_k)``: a zero-copy view of ``w``.

        ``weight(k)[j, i]`` is ``w[off_k + i + L_k * j]``; writing to it changes ``w``.
        """
        return self._W[self._check_layer(k)]

    def bias(self, k: int) -> Any:
        """Layer ``k``'s biases, shape ``(L_{k+1},)``: a zero-copy view of ``b``."""
        return self._B[self._check_layer(k)]

    def set_params(self, w: Any, b: Any) -> None:
        """Copy new values into ``w`` and ``b`` (NumPy or backend arrays; the inputs are not kept).

        Raises
        ------
        ValueError
            Wrong length, wrong dimensionality or non-finite values.
        TypeError
            Non-numeric input.
        """
        be = self._be
        new = []
        for name, value, length in (("w", w, self.layout.w_len), ("b", b, self.layout.b_len)):
            arr = as_data_array(name, value, ndims=(1,), numeric="fiu")
            if arr.shape[0] != length:
                raise ValueError(f"{name}: expected a 1-D array of length {length}, got {describe(arr)}")
            host = np.asarray(to_numpy(arr), dtype=np.float64)
            if not np.all(np.isfinite(host)):
                raise ValueError(f"{name}: expected finite values, found NaN or inf")
            new.append(be.asarray(arr, dtype=self.dtype))
        be.ops.copy(new[0], out=self._w)
        be.ops.copy(new[1], out=self._b)

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(w, b)`` as NumPy arrays."""
        return np.array(to_numpy(self._w)), np.array(to_numpy(self._b))

    # ----------------------------------------------------------------- the math (hot path)
    def _forward(self, x: Any, ws: _Workspace) -> Any:
        """Forward pass of a backend batch ``x`` ``(n, L_1)`` into ``ws``; returns the output buffer."""
        xp, ops = self._be.xp, self._be.ops
        a = x
        for Wt, b, act, z in zip(self._Wt, self._B, self._acts, ws.acts, strict=True):
            ops.matmul(a, Wt, out=z)
            z += b
            a = act.forward(xp, ops, z)
        return a

    def _backward(self, x: Any, ws: _Workspace) -> Any:
        """Backpropagate ``ws.deltas[-1] = dL/dz_out`` into the gradient buffer; returns ``grads``."""
        xp, ops = self._be.xp, self._be.ops
        acts, deltas, deltas_t = ws.acts, ws.deltas, ws.deltas_t
        for k in range(self.layout.n_layers - 1, -1, -1):
            d = self._acts[k].backward(xp, ops, deltas[k], acts[k])
            ops.matmul(deltas_t[k], x if k == 0 else acts[k - 1], out=self._dW[k])
            ops.sum0(d, out=self._dB[k])
            if k:
                ops.matmul(d, self._W[k], out=deltas[k - 1])
        return self.grads

    def _loss_and_grad(self, x: Any, y: Any, loss: Loss) -> Any:
        """Fill the gradient buffer for backend batch ``(x, y)``; returns the loss as a 0-d array."""
        ws = self._workspace(int(x.shape[0]))
        z = self._forward(x, ws)
        value = loss.value_and_grad(self._be.xp, self._be.ops, z, y, ws.deltas[-1])
        self._backward(x, ws)
        return value

    def _loss_and_grad_probe(self, x: Any, y: Any, loss: Loss) -> tuple[Any, Any]:
        """Like :meth:`_loss_and_grad`, plus ``probe = loss + 0 * sum(gradient)``: a 0-d array equal
        to the loss when loss and gradient are finite, and NaN/inf as soon as either is not."""
        value = self._loss_and_grad(x, y, loss)
        return value, value + 0.0 * self._gradient_sum(x, self._workspace(int(x.shape[0])))

    def _gradient_sum(self, x: Any, ws: _Workspace) -> Any:
        """Sum of every entry of the gradient just computed (0-d), in the cheaper of two ways.

        Directly for small nets; for large ones through ``sum(dW_k) = sum_n rowsum(delta_k)[n] *
        rowsum(a_{k-1})[n]`` and ``sum(db_k) = sum(delta_k)``: O(batch x width) instead of
        O(weights), with NaN/inf propagating the same way (0 * inf = NaN). Row sums in float64 so
        that large finite values do not overflow.
        """
        xp = self._be.xp
        if ws.direct_sum:
            return self._be.ops.total(self.grads)
        total = 0.0
        for k in range(self.layout.n_layers):
            rs_d = xp.astype(xp.sum(ws.deltas[k], axis=1), xp.float64)
            rs_a = xp.astype(xp.sum(x if k == 0 else ws.acts[k - 1], axis=1), xp.float64)
            total = total + xp.vecdot(rs_d, rs_a) + xp.sum(rs_d)
        return total

    # ----------------------------------------------------------------- public math
    def forward(self, X: Any) -> Any:
        """Raw outputs of the last layer (logits for an ``identity`` last layer).

        Parameters
        ----------
        X : array, shape (n, L_1)
            NumPy, or an array of the network's backend.

        Returns
        -------
        array of the backend, shape (n, L_n)
        """
        return self.predict(X, batch_size=None)

    def predict(self, X: Any, batch_size: int | None = PREDICT_BATCH) -> Any:
        """Same values as :meth:`forward`, computed ``batch_size`` rows at a time (bounded memory).

        Returns
        -------
        array of the backend, shape (n, L_n)
        """
        X = check_features(X, self.layout.sizes[0])
        n = int(X.shape[0])
        step = n if batch_size is None else check_int("batch_size", batch_size, 1)
        be = self._be
        if step >= n:
            return be.xp.asarray(self._forward(be.asarray(X, dtype=self.dtype), self._workspace(n)), copy=True)
        out = be.xp.empty((n, self.layout.sizes[-1]), dtype=self.dtype, device=be.device)
        for start in range(0, n, step):
            stop = min(start + step, n)  # in-bounds slices only (the Array API leaves others unspecified)
            xb = be.asarray(X[start:stop, ...], dtype=self.dtype)
            out[start:stop, ...] = self._forward(xb, self._workspace(stop - start))
        return out

    def predict_proba(self, X: Any) -> Any:
        """Softmax of the outputs (sigmoid when there is a single output); shape (n, L_n)."""
        z = self.predict(X)
        xp = self._be.xp
        return sigmoid(xp, z) if z.shape[1] == 1 else softmax(xp, z)

    def predict_class(self, X: Any) -> Any:
        """Predicted class index: argmax of the outputs, or ``logit > 0`` for one output; shape (n,)."""
        z = self.predict(X)
        xp = self._be.xp
        if z.shape[1] == 1:
            return xp.astype(z[:, 0] > 0, xp.int64)
        return xp.argmax(z, axis=1)

    def loss_and_grad(self, X: Any, Y: Any, loss: str = "mse") -> tuple[float, Any, Any]:
        """Loss over the whole of ``(X, Y)`` and its gradient w.r.t. ``w`` and ``b``.

        Parameters
        ----------
        X : array, shape (n, L_1)
        Y : array, shape (n, L_n); or (n,) for one output or integer labels with cross_entropy
        loss : {"mse", "cross_entropy", "bce"}

        Returns
        -------
        loss : float
        dw : array of the backend, shape (w_len,), laid out like ``w`` (a new array)
        db : array of the backend, shape (b_len,), laid out like ``b`` (a new array)
        """
        loss_fn = check_loss(loss)
        data = self._dataset(X, Y, loss, check_values=False)
        x, y = data.batch(slice(None))
        value = self._loss_and_grad(x, y, loss_fn)
        xp = self._be.xp
        return float(value), xp.asarray(self._dw, copy=True), xp.asarray(self._db, copy=True)

    def _dataset(self, X: Any, Y: Any, loss: str, *, check_values: bool = True, suffix: str = "") -> Dataset:
        sizes = self.layout.sizes
        return Dataset(
            self._be,
            self.dtype,
            X,
            Y,
            sizes[0],
            sizes[-1],
            loss,
            check_values=check_values,
            name_x="X" + suffix,
            name_y="Y" + suffix,
        )

    def evaluate(self, X: Any, Y: Any, loss: str | None = None, batch_size: int = PREDICT_BATCH) -> float:
        """Mean loss over ``(X, Y)`` (default: the loss the network was last trained with, else mse)."""
        loss = loss or self.loss_ or "mse"
        loss_fn = check_loss(loss)
        data = self._dataset(X, Y, loss, check_values=False)
        return mean_over_batches(self, data, loss_fn, check_int("batch_size", batch_size, 1))[0]

    def score(self, X: Any, y: Any, loss: str | None = None) -> float:
        """Accuracy for classification losses (cross_entropy, bce), R^2 for regression (mse).

        ``loss`` defaults to the loss the network was last trained with, else mse.
        """
        loss = loss or self.loss_ or "mse"
        check_loss(loss)
        data = self._dataset(X, y, loss, check_values=False)
        if loss in CLASSIFICATION_LOSSES:
            return mean_over_batches(self, data, LOSSES[loss], PREDICT_BATCH)[1]
        return r2_score(self, data)

    # ----------------------------------------------------------------- persistence and transfer
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to ONE safetensors file, atomically (see :mod:`flatnet_xp.persistence`)."""
        from flatnet_xp.persistence import save_model

        save_model(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        backend: str | ModuleType | None = None,
        dtype: str | None = None,
        device: Any = None,
    ) -> FlatMLP:
        """Read a model file (or a checkpoint's model) onto ``backend`` (default numpy) and ``dtype``
        (default: the file's). Raises :class:`flatnet_xp.ModelFileError` for any malformed file."""
        from flatnet_xp.persistence import load_model

        return load_model(path, backend, dtype, device)

    def to(self, backend: str | ModuleType, dtype: str | None = None, device: Any = None) -> FlatMLP:
        """A copy of this network on another backend/device (and optionally dtype)."""
        new = FlatMLP(
            self.layout.sizes, self.activations, backend=backend, dtype=dtype or self.dtype_name, device=device
        )
        new.set_params(*self.get_params())
        new.loss_ = self.loss_
        return new

    def copy(self) -> FlatMLP:
        """An independent copy on the same backend, device and dtype."""
        return self.to(self.backend, device=self._device_arg)

    def to_torch(self) -> Any:
        """An equivalent ``torch.nn.Sequential`` (Linear + activation modules), float64 or float32 on CPU."""
        from flatnet_xp.interop import to_torch

        return to_torch(self)

    def torch_state_dict(self) -> dict[str, Any]:
        """``state_dict`` of :meth:`to_torch`'s Sequential (keys ``"0.weight"``, ``"0.bias"``, ...)."""
        from flatnet_xp.interop import torch_state_dict

        return torch_state_dict(self)

    @classmethod
    def from_torch(
        cls,
        module: Any,
        activations: str | Sequence[str] | None = None,
        *,
        backend: str | ModuleType = "numpy",
        dtype: str | None = None,
        device: Any = None,
    ) -> FlatMLP:
        """Build from an ``nn.Sequential`` of Linear and activation modules, or from a ``state_dict``
        (then ``activations`` is required). No transpose: our layout is ``nn.Linear.weight``'s."""
        from flatnet_xp.interop import from_torch

        return from_torch(module, activations, backend=backend, dtype=dtype, device=device)

    # ----------------------------------------------------------------- training
    def fit(self, X: Any, Y: Any, **kwargs: Any) -> History:
        """Train on ``(X, Y)``; see :func:`flatnet_xp.training.fit` for every argument."""
        from flatnet_xp.training import fit

        return fit(self, X, Y, **kwargs)

    # ----------------------------------------------------------------- pickling (scikit-learn's convention)
    def __getstate__(self) -> dict[str, Any]:
        """Architecture, backend, dtype, parameters (as NumPy), loss and history; no modules or buffers."""
        w, b = self.get_params()
        return {
            "layer_sizes": list(self.layout.sizes),
            "activations": list(self.activations),
            "backend": self.backend,
            "device": self._device_arg,
            "dtype": self.dtype_name,
            "w": w,
            "b": b,
            "loss_": self.loss_,
            "history_": self.history_,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        FlatMLP.__init__(
            self,
            state["layer_sizes"],
            state["activations"],
            backend=state["backend"],
            dtype=state["dtype"],
            device=state["device"],
        )
        self.set_params(state["w"], state["b"])
        self.loss_, self.history_ = state["loss_"], state["history_"]

    def __repr__(self) -> str:
        return (
            f"FlatMLP({list(self.layout.sizes)}, activations={list(self.activations)}, "
            f"backend={self.backend!r}, dtype={self.dtype_name!r})"
        )
