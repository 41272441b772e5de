"""``FlatMLP``: a multilayer perceptron whose parameters live in ONE flat buffer on any Array API backend.

The class holds state (the buffers, their views, the backend) and delegates: the math is in
:mod:`flatnet_xp.functional`, training in :mod:`flatnet_xp.training` (and :mod:`flatnet_xp.compiled`
on JAX), files in :mod:`flatnet_xp.persistence`, PyTorch exchange in :mod:`flatnet_xp.interop`.
"""

from __future__ import annotations

import functools
import numbers
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import array_api_compat
import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._compat import get_backend, precision, to_numpy
from flatnet_xp._data import Dataset, check_features
from flatnet_xp._validation import as_data_array, check_dtype, check_finite, check_int, describe
from flatnet_xp.activations import ACTIVATIONS, sigmoid
from flatnet_xp.init import INITS, initialize
from flatnet_xp.layout import Layout
from flatnet_xp.losses import Loss, get_loss, softmax
from flatnet_xp.metrics import evaluate_dataset

if TYPE_CHECKING:
    from flatnet_xp.history import Callback, History
    from flatnet_xp.optim import Optimizer
    from flatnet_xp.solvers import LBFGS

__all__ = ["FlatMLP"]

#: Rows per chunk in ``predict``: bounds the activation buffers whatever the size of ``X``.
PREDICT_BATCH = 4096
#: Workspaces (one per batch size) each thread keeps for inference.
_MAX_WORKSPACES = 4
#: Slots after the flat gradient reserved for data-parallel control values.
GRAD_EXTRA_SLOTS = 5


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


def _check_seed(seed: Any) -> np.random.Generator | np.random.RandomState:
    if isinstance(seed, np.random.Generator | np.random.RandomState):
        return seed
    if seed is not None:
        check_int("seed", seed, 0)
    return np.random.default_rng(seed)


#: Training buffers below this size are not checked against the machine's available memory.
_SMALL_FIT_BYTES = 64 << 20


def _available_memory() -> int | None:
    """Bytes this machine can still give (MemAvailable + SwapFree on Linux), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1].isdigit()}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, IndexError, ValueError):
        return None


_F = TypeVar("_F", bound=Callable[..., Any])


def _scoped(method: _F) -> _F:
    """Run a public method inside the network's precision scope (JAX float64: scoped x64)."""

    @functools.wraps(method)
    def wrapper(self: FlatMLP, *args: Any, **kwargs: Any) -> Any:
        if self._be.mutable:
            return method(self, *args, **kwargs)
        with precision(self._be, self.dtype):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class FlatMLP:
    """Multilayer perceptron with all weights in one flat array ``w`` and all biases in ``b``.

    ``w`` and ``b`` are views of ONE parameter buffer ``params``; layer ``k``'s matrix ``weight(k)``
    (shape ``(L_{k+1}, L_k)``, PyTorch's ``nn.Linear.weight`` layout) and ``bias(k)`` are zero-copy
    views made once, so an optimizer step is a few whole-buffer operations whatever the depth.
    Forward, backward and updates are written once against the Array API standard
    (:mod:`flatnet_xp.functional`).

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths, input first: ``[L_1, ..., L_n]``, at least two.
    activations : str or sequence of str, default "sigmoid"
        One of ``sigmoid, tanh, relu, leaky_relu, identity`` for every weight layer, or one name per
        weight layer. Use ``identity`` on the last layer for logits (cross_entropy, bce, poisson).
    backend : str or namespace, default "numpy"
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"`` or ``"jax"`` (or their namespaces).
        On JAX, arrays are immutable: ``w``, ``b``, ``weight(k)`` and ``bias(k)`` are read-only
        slices of the current parameters, and ``fit`` compiles each epoch into one XLA program.
    dtype : str or dtype, default "float32"
        ``"float32"`` or ``"float64"``, or a NumPy/PyTorch/JAX float dtype, or ``float`` (float64).
    seed : int, numpy Generator or RandomState, optional
        Seed of the host generator that draws the initial weights, so one seed gives identical
        starting weights on every backend.
    device : optional
        Backend device (torch: ``"cpu"``, ``"cuda:0"``; cupy: device id; JAX: ``"cpu"``, ``"gpu:0"``
        or a ``jax.Device``). Default: the library's.
    init : {"auto", "glorot", "he", "torch", "sklearn"}, default "auto"
        Initial weights (see :mod:`flatnet_xp.init`): ``auto`` is He uniform for relu/leaky_relu
        layers and Glorot uniform for the others, with zero biases.

    Attributes
    ----------
    layout : Layout
        Sizes and offsets of every layer inside ``w`` and ``b`` (backend-free, immutable).
    activations : tuple of str
        One activation name per weight layer.
    dtype : dtype
        The backend's dtype object of every parameter, gradient and activation (e.g.
        ``numpy.float32``, ``torch.float64``).
    dtype_name : {"float32", "float64"}
        The same dtype as a name (what model files store).
    params : array of the backend, shape (w_len + b_len,)
        The ONE parameter buffer: ``w`` then ``b``. On mutable backends ``w``, ``b``, ``weight(k)``
        and ``bias(k)`` are views of it; on JAX it is an immutable array that ``fit`` and
        :meth:`set_params` replace.
    grads : array of the backend, shape (w_len + b_len,)
        The flat gradient buffer ``[dw, db]`` that ``fit`` writes into, laid out like ``params``
        (allocated on first use); :meth:`loss_and_grad` returns new arrays instead.
    loss_ : str, Loss or None
        The loss the network was last trained with (a name, or the :class:`~flatnet_xp.Loss` when
        it is scaled); None before any training. Saved in model files and checkpoints, so that
        :meth:`evaluate` and :meth:`score` default to it, also after :meth:`load`.
    history_ : History or None
        The :class:`~flatnet_xp.History` of the last ``fit`` (pickled with the network, not saved in
        model files).
    preprocessing : flatnet_xp.preprocessing.Preprocessing or None
        How raw table rows become inputs and what the outputs mean (feature names, standardization,
        target name and scale, task, class names). ``flatnet-xp train`` sets it; it is saved in
        model files and restored by :meth:`load`, and ``flatnet-xp predict`` applies it.
        :meth:`predict` does not: call ``net.predict(prep.transform(rows))`` (then
        ``prep.unscale_target(...)`` for regression, ``prep.decode(net.predict_class(...))`` for
        class names) with ``prep = net.preprocessing``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments (named), or buffers too large for this machine's memory (``layer_sizes``).

    Notes
    -----
    Inference (``predict``, ``forward``, ``predict_proba``, ``predict_class``, ``evaluate``,
    ``score``, ``loss_and_grad``) is safe from any number of threads: each thread gets its own
    activation buffers. Two concurrent ``fit`` calls on one network raise ``RuntimeError``.

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
        dtype: Any = "float32",
        seed: int | np.random.Generator | np.random.RandomState | None = None,
        device: Any = None,
        init: str = "auto",
    ) -> None:
        self.layout = Layout(layer_sizes)
        self.activations = _check_activations(activations, self.layout.n_layers)
        self.dtype_name = check_dtype(dtype)
        if init not in INITS:
            raise ValueError(f"init: expected one of {list(INITS)}, got {init!r}")
        rng = _check_seed(seed)
        self._be = be = get_backend(backend, device)
        self._device_arg = device
        self.dtype = getattr(be.xp, self.dtype_name)
        self._spec = F.Spec.build(self.layout, self.activations, be.xp, be.ops, self.dtype, be.device)
        self._check_memory()
        self._local = threading.local()
        self._fit_lock = threading.Lock()
        self._grad_parent: Any = None
        self._allocate(lambda write_w, write_b: initialize(init, self.layout, self.activations, rng, write_w, write_b))
        self.loss_: str | Loss | None = None
        self.history_: History | None = None
        self.preprocessing: Any = None

    # ----------------------------------------------------------------- buffers and views
    def _check_memory(self) -> None:
        """Refuse, before allocating, parameters and gradients that cannot fit in this machine."""
        itemsize = np.dtype(self.dtype_name).itemsize
        need = 2 * (self.layout.n_params + GRAD_EXTRA_SLOTS) * itemsize
        have = None if self._be.is_gpu else _available_memory()
        if have is not None and need > have:
            raise ValueError(
                f"layer_sizes: {list(self.layout.sizes)} needs {self.layout.n_params:,} parameters, "
                f"{need:,} bytes of {self.dtype_name} parameters and gradients; this machine has "
                f"{have:,} bytes available"
            )

    def _check_training_memory(
        self, copies: int, batch_size: int, copy_itemsize: int | None = None, rows_name: str | None = "batch_size"
    ) -> None:
        """Refuse, before any work, a fit whose buffers cannot fit in this machine's memory.

        ``copies`` flat parameter-sized arrays (optimizer state, snapshots, the best weights; of
        ``copy_itemsize`` bytes per element, the network's dtype by default), the gradient buffer
        when not yet allocated, and the activations and deltas of one batch of ``batch_size`` rows.
        """
        itemsize = np.dtype(self.dtype_name).itemsize
        n = self.layout.n_params
        grads = 0 if self._grad_parent is not None else n + GRAD_EXTRA_SLOTS
        state = copies * n * (copy_itemsize or itemsize) + grads * itemsize
        activations = 2 * batch_size * sum(self.layout.sizes) * itemsize
        if state + activations < _SMALL_FIT_BYTES or self._be.is_gpu:
            return  # reading /proc/meminfo costs ~40 us: more than a whole small compiled epoch's overhead
        have = _available_memory()
        if have is not None and state + activations > have:
            rows = f" with {rows_name}={batch_size}" if rows_name else f" ({batch_size} rows at a time)"
            smaller = f"a smaller {rows_name} or network" if rows_name else "a smaller network"
            raise ValueError(
                f"layer_sizes{'/' + rows_name if rows_name else ''}: training {list(self.layout.sizes)}{rows} "
                f"needs about {state + activations:,} bytes ({state:,} for optimizer state, snapshots and "
                f"gradients, {activations:,} for the activations); this machine has {have:,} bytes "
                f"available: use {smaller}"
            )

    def _allocate(self, fill: Callable[[Callable[..., None], Callable[..., None]], None]) -> None:
        """Allocate the zeroed parameter buffer and let ``fill`` write the initial values into it."""
        be, lay = self._be, self.layout
        xp = be.xp
        if be.mutable:
            try:
                self.params = xp.zeros(lay.n_params, dtype=self.dtype, device=be.device)
            except MemoryError as exc:  # also cupy's and torch's out-of-memory errors
                raise ValueError(f"layer_sizes: could not allocate {lay.n_params:,} parameters ({exc})") from None
            if not array_api_compat.is_writeable_array(self.params):
                raise ValueError(f"backend: {be.name} arrays are not writeable")
            views = F.layer_views(self._spec, self.params)

            def write_w(k: int, rows: slice, cols: slice, values: np.ndarray) -> None:
                views.W[k][rows, cols] = be.asarray(values, dtype=self.dtype)

            def write_b(k: int, values: np.ndarray) -> None:
                views.b[k][...] = be.asarray(values, dtype=self.dtype)

            fill(write_w, write_b)
            self._views = views
            return
        host = np.zeros(lay.n_params, dtype=self.dtype_name)  # JAX: fill on the host, place once
        hw = [host[lay.w_slice(k)].reshape(lay.shapes[k]) for k in range(lay.n_layers)]
        hb = [host[lay.w_len + lay.b_offsets[k] : lay.w_len + lay.b_offsets[k + 1]] for k in range(lay.n_layers)]
        fill(lambda k, r, c, v: hw[k].__setitem__((r, c), v), lambda k, v: hb[k].__setitem__(slice(None), v))
        self.params = be.asarray(host, dtype=self.dtype)

    @property
    def _views_now(self) -> F.Views:
        """Layer views of the current parameters (made once on mutable backends)."""
        if self._be.mutable:
            return self._views
        with precision(self._be, self.dtype):
            return F.layer_views(self._spec, self.params)

    @property
    def grads(self) -> Any:
        """The flat gradient buffer ``[dw, db]`` that ``fit`` writes into, laid out like ``params``
        (allocated on first use); :meth:`loss_and_grad` returns new arrays instead."""
        if self._grad_parent is None:
            be = self._be
            self._grad_parent = be.xp.zeros(self.layout.n_params + GRAD_EXTRA_SLOTS, dtype=self.dtype, device=be.device)
            n = self.layout.n_params
            self._grad_views = F.layer_views(self._spec, self._grad_parent[:n]) if be.mutable else None
        return self._grad_parent[: self.layout.n_params]

    def _workspace(self, n: int) -> F.Workspace:
        """This thread's activation buffers for batch size ``n`` (a few sizes are kept per thread)."""
        try:
            cache = self._local.workspaces
        except AttributeError:
            cache = self._local.workspaces = {}
        ws = cache.get(n)
        if ws is None:
            ws = F.Workspace(self._spec, n)
            if n <= PREDICT_BATCH:  # keep small ones for reuse; a one-off huge forward is not kept
                if len(cache) >= _MAX_WORKSPACES:
                    cache.pop(next(iter(cache)))
                cache[n] = ws
        return ws

    # ----------------------------------------------------------------- public parameter access
    @property
    def backend(self) -> str:
        """Name of the backend (``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"``)."""
        return self._be.name

    @property
    def device(self) -> Any:
        """The device the arrays live on, as the backend names it (``"cpu"`` for NumPy, a
        ``torch.device``, a ``cupy.cuda.Device``, a ``jax.Device``)."""
        return self._be.device

    @property
    def xp(self) -> Any:
        """The Array API namespace of the network's arrays."""
        return self._be.xp

    @property
    def w(self) -> Any:
        """All weights, shape ``(w_len,)``: a view of the parameter buffer (read-only copy on JAX)."""
        return self.params[: self.layout.w_len]

    @property
    def b(self) -> Any:
        """All biases, shape ``(b_len,)``: a view of the parameter buffer (read-only copy on JAX)."""
        return self.params[self.layout.w_len :]

    def _check_layer(self, k: Any) -> int:
        n = self.layout.n_layers
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not -n <= int(k) < n:
            raise IndexError(f"k: expected a weight-layer index in [0, {n - 1}], got {k!r}")
        return int(k) % n

    def weight(self, k: int) -> Any:
        """Layer ``k``'s weights, shape ``(L_{k+1}, L_k)``: a zero-copy view of ``w``.

        ``weight(k)[j, i]`` is ``w[off_k + i + L_k * j]``; writing to it changes ``w`` (not on JAX,
        whose arrays are immutable: use :meth:`set_params`).
        """
        return self._views_now.W[self._check_layer(k)]

    def bias(self, k: int) -> Any:
        """Layer ``k``'s biases, shape ``(L_{k+1},)``: a zero-copy view of ``b``."""
        return self._views_now.b[self._check_layer(k)]

    @_scoped
    def set_params(self, w: Any, b: Any) -> None:
        """Copy new values into ``w`` and ``b`` (NumPy or backend arrays; the inputs are not kept).

        Raises
        ------
        ValueError
            Wrong length, wrong dimensionality or non-finite values (also values that overflow the
            network's dtype).
        TypeError
            Non-numeric input.
        """
        be = self._be
        new = []
        for name, value, length in (("w", w, self.layout.w_len), ("b", b, self.layout.b_len)):
            arr = as_data_array(name, value, ndims=(1,), numeric="fiu")
            if arr.shape[0] != length:
                raise ValueError(f"{name}: expected a 1-D array of length {length}, got {describe(arr)}")
            host = np.asarray(to_numpy(arr))
            with np.errstate(over="ignore"):
                cast = host.astype(self.dtype_name)
            if not np.all(np.isfinite(cast)):
                raise ValueError(f"{name}: expected finite values within {self.dtype_name}'s range, found NaN or inf")
            new.append(cast)
        if be.mutable:
            be.ops.copy(be.asarray(new[0], dtype=self.dtype), self.w)
            be.ops.copy(be.asarray(new[1], dtype=self.dtype), self.b)
        else:
            self.params = be.asarray(np.concatenate(new), dtype=self.dtype)

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(w, b)`` as NumPy arrays."""
        p = np.array(to_numpy(self.params))
        return p[: self.layout.w_len].copy(), p[self.layout.w_len :].copy()

    # ----------------------------------------------------------------- the eager math (mutable backends)
    def _forward(self, x: Any, ws: F.Workspace) -> Any:
        """Forward pass of a backend batch ``x`` ``(n, L_1)`` into ``ws``; returns the output."""
        if not self._be.mutable:
            from flatnet_xp.compiled import forward as compiled_forward

            return compiled_forward(self, x)
        return F.forward(self._spec, self._views, x, ws)

    def _loss_and_grad(self, x: Any, y: Any, loss: Loss, sw: Any = None) -> Any:
        """Fill :attr:`grads` for backend batch ``(x, y)``; returns the loss (0-d). Not thread-safe:
        the training loop's step (and a test hook); :meth:`loss_and_grad` is the public, safe one."""
        if not self._be.mutable:
            from flatnet_xp.compiled import loss_and_grad as compiled_loss_and_grad

            value, self._grad_parent = compiled_loss_and_grad(self, x, y, sw, loss)
            return value
        self.grads  # noqa: B018 - allocates the buffer (and its views) on first use
        ws = self._workspace(int(x.shape[0]))
        value, _ = F.loss_and_grad(self._spec, self._views, x, y, sw, loss, ws, self._grad_views)
        return value

    # ----------------------------------------------------------------- public math
    def forward(self, X: Any) -> Any:
        """Raw outputs of the last layer (logits for an ``identity`` last layer).

        Parameters
        ----------
        X : array, shape (n, L_1)
            NumPy, an array of the network's backend, or a scipy.sparse matrix.

        Returns
        -------
        array of the backend, shape (n, L_n)
        """
        return self.predict(X, batch_size=None)

    @_scoped
    def predict(self, X: Any, batch_size: int | None = PREDICT_BATCH) -> Any:
        """Same values as :meth:`forward`, computed ``batch_size`` rows at a time (bounded memory).

        Returns
        -------
        array of the backend, shape (n, L_n)

        Raises
        ------
        ValueError
            ``X`` has the wrong number of columns, or holds NaN, inf or values beyond the dtype's range.
        """
        X = check_features(X, self.layout.sizes[0])
        n = int(X.shape[0])
        step = n if batch_size is None else check_int("batch_size", batch_size, 1)
        check_finite("X", X, np.dtype(self.dtype_name))  # NaN in, NaN out would be a silent wrong answer
        data = Dataset.features_only(self._be, self.dtype, X)
        be, xp = self._be, self._be.xp
        with precision(be, self.dtype):
            if step >= n:
                z = self._forward(data.batch_x(slice(None)), self._workspace(n))
                return xp.asarray(z, copy=True) if be.mutable else z
            out = xp.empty((n, self.layout.sizes[-1]), dtype=self.dtype, device=be.device) if be.mutable else None
            parts = []
            for start in range(0, n, step):
                stop = min(start + step, n)  # in-bounds slices only (the Array API leaves others unspecified)
                z = self._forward(data.batch_x(slice(start, stop)), self._workspace(stop - start))
                if out is None:
                    parts.append(z)
                else:
                    out[start:stop, ...] = z
            return out if out is not None else xp.concat(parts, axis=0)

    @_scoped
    def predict_proba(self, X: Any) -> Any:
        """Softmax of the outputs (sigmoid when there is a single output); shape (n, L_n)."""
        z = self.predict(X)
        xp = self._be.xp
        with precision(self._be, self.dtype):
            return sigmoid(xp, z) if z.shape[1] == 1 else softmax(xp, z)

    @_scoped
    def predict_class(self, X: Any) -> Any:
        """Predicted class index: argmax of the outputs, or ``logit > 0`` for one output; shape (n,)."""
        z = self.predict(X)
        xp = self._be.xp
        if z.shape[1] == 1:
            return xp.astype(z[:, 0] > 0, xp.int64)
        return xp.argmax(z, axis=1)

    @_scoped
    def loss_and_grad(
        self, X: Any, Y: Any, loss: str | Loss = "mse", sample_weight: Any = None
    ) -> tuple[float, Any, Any]:
        """Loss over the whole of ``(X, Y)`` and its gradient w.r.t. ``w`` and ``b``.

        Thread-safe: computed into new arrays, never into the buffers ``fit`` uses.

        Parameters
        ----------
        X : array, shape (n, L_1)
        Y : array, shape (n, L_n); or (n,) for one output or integer labels with cross_entropy
        loss : {"mse", "cross_entropy", "bce", "poisson"} or Loss
        sample_weight : array, shape (n,), optional
            Non-negative weights: the loss is their weighted average of the per-sample losses.

        Returns
        -------
        loss : float
        dw : array of the backend, shape (w_len,), laid out like ``w`` (a new array)
        db : array of the backend, shape (b_len,), laid out like ``b`` (a new array)
        """
        loss_fn = get_loss(loss)
        data = self._dataset(X, Y, loss_fn, sample_weight=sample_weight, check_values=False)
        x, y, sw = data.batch(slice(None), normalize="global")
        be, w_len = self._be, self.layout.w_len
        if not be.mutable:
            from flatnet_xp.compiled import loss_and_grad as compiled_loss_and_grad

            value, flat = compiled_loss_and_grad(self, x, y, sw, loss_fn)
        else:
            flat = be.xp.zeros(self.layout.n_params, dtype=self.dtype, device=be.device)
            ws = F.Workspace(self._spec, int(x.shape[0]))
            value, _ = F.loss_and_grad(self._spec, self._views, x, y, sw, loss_fn, ws, F.layer_views(self._spec, flat))
        return float(value), flat[:w_len], flat[w_len:]

    def _dataset(
        self,
        X: Any,
        Y: Any,
        loss: str | Loss,
        *,
        sample_weight: Any = None,
        check_values: bool = True,
        suffix: str = "",
    ) -> Dataset:
        sizes = self.layout.sizes
        return Dataset(
            self._be,
            self.dtype,
            X,
            Y,
            sizes[0],
            sizes[-1],
            get_loss(loss),
            sample_weight=sample_weight,
            check_values=check_values,
            names=("X" + suffix, "Y" + suffix, "sample_weight" + suffix),
        )

    @_scoped
    def evaluate(
        self, X: Any, Y: Any, loss: str | Loss | None = None, batch_size: int = PREDICT_BATCH, sample_weight: Any = None
    ) -> float:
        """Mean loss over ``(X, Y)`` (weighted mean with ``sample_weight``).

        ``loss`` defaults to the loss the network was last trained with (also after :meth:`load`),
        else mse. ``X`` and ``Y`` are checked as ``fit`` checks them (NaN, inf, values beyond the
        dtype, targets outside the loss's range raise ``ValueError``).
        """
        loss_fn = get_loss(loss or self.loss_ or "mse")
        data = self._dataset(X, Y, loss_fn, sample_weight=sample_weight)
        return evaluate_dataset(self, data, loss_fn, check_int("batch_size", batch_size, 1)).loss

    @_scoped
    def score(self, X: Any, y: Any, loss: str | Loss | None = None, sample_weight: Any = None) -> float:
        """Accuracy for classification losses (cross_entropy, bce), R^2 of the predictions for the others
        (the outputs for mse, their exponential, the predicted rate, for poisson); R^2 is NaN for fewer
        than two samples, as in scikit-learn.

        ``loss`` defaults to the loss the network was last trained with (also after :meth:`load`),
        else mse. Inputs are checked as in :meth:`evaluate`.
        """
        loss_fn = get_loss(loss or self.loss_ or "mse")
        data = self._dataset(X, y, loss_fn, sample_weight=sample_weight)
        scores = evaluate_dataset(self, data, loss_fn, PREDICT_BATCH, r2=not loss_fn.classification)
        return scores.score(loss_fn)

    # ----------------------------------------------------------------- description
    def summary(self) -> str:
        """A table of the layers: shape, activation, parameter count and offsets into ``w`` and ``b``.

        Returns
        -------
        str
            Printable text (the flat layout made visible).
        """
        lay = self.layout
        rows = [("layer", "shape (out, in)", "activation", "params", "w[start:stop]", "b[start:stop]")]
        for k, ((n_out, n_in), act) in enumerate(zip(lay.shapes, self.activations, strict=True)):
            rows.append(
                (
                    str(k),
                    f"({n_out}, {n_in})",
                    act,
                    f"{n_out * n_in + n_out:,}",
                    f"w[{lay.w_offsets[k]:,}:{lay.w_offsets[k + 1]:,}]",
                    f"b[{lay.b_offsets[k]:,}:{lay.b_offsets[k + 1]:,}]",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
        nbytes = lay.n_params * np.dtype(self.dtype_name).itemsize
        lines.insert(1, "-" * len(lines[0]))
        lines += [
            "-" * len(lines[0]),
            f"total: {lay.n_params:,} parameters (w_len {lay.w_len:,} + b_len {lay.b_len:,}), "
            f"{nbytes:,} bytes of {self.dtype_name}; backend {self.backend}, device {self.device}",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"FlatMLP({list(self.layout.sizes)}, activations={list(self.activations)}, "
            f"backend={self.backend!r}, dtype={self.dtype_name!r}, n_params={self.layout.n_params})"
        )

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
        dtype: Any = None,
        device: Any = None,
    ) -> FlatMLP:
        """Read a model file (or a checkpoint's model) onto ``backend`` (default numpy) and ``dtype``
        (default: the file's). Raises :class:`flatnet_xp.ModelFileError` for any malformed file."""
        from flatnet_xp.persistence import load_model

        return load_model(path, backend, dtype, device)

    def to(self, backend: str | ModuleType, dtype: Any = None, device: Any = None) -> FlatMLP:
        """A copy of this network on another backend/device (and optionally dtype)."""
        new = FlatMLP(
            self.layout.sizes, self.activations, backend=backend, dtype=dtype or self.dtype_name, device=device
        )
        new.set_params(*self.get_params())
        new.loss_, new.preprocessing = self.loss_, self.preprocessing
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
        dtype: Any = None,
        device: Any = None,
    ) -> FlatMLP:
        """Build from an ``nn.Sequential`` of Linear and activation modules, or from a ``state_dict``
        (then ``activations`` is required). No transpose: our layout is ``nn.Linear.weight``'s."""
        from flatnet_xp.interop import from_torch

        return from_torch(module, activations, backend=backend, dtype=dtype, device=device)

    # ----------------------------------------------------------------- training
    def fit(
        self,
        X: Any,
        Y: Any,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        optimizer: Optimizer | LBFGS | None = None,
        loss: str | Loss = "mse",
        sample_weight: Any = None,
        shuffle: bool | Callable[[int, int], Any] = True,
        seed: int | None = None,
        validation_data: tuple[Any, ...] | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        callbacks: Sequence[Callback] | Callback | None = None,
        progress: bool | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        resume: str | os.PathLike[str] | None = None,
        comm: Any = None,
        initial_epoch: int = 0,
    ) -> History:
        """Train on ``(X, Y)``; every argument is documented in :func:`flatnet_xp.training.fit`.

        Returns
        -------
        History
            Also stored as ``history_``.
        """
        from flatnet_xp.training import fit

        return fit(
            self,
            X,
            Y,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            loss=loss,
            sample_weight=sample_weight,
            shuffle=shuffle,
            seed=seed,
            validation_data=validation_data,
            patience=patience,
            min_delta=min_delta,
            callbacks=callbacks,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            comm=comm,
            initial_epoch=initial_epoch,
        )

    # ----------------------------------------------------------------- pickling (scikit-learn's convention)
    def __getstate__(self) -> dict[str, Any]:
        """Architecture, backend, dtype, parameters (as NumPy), loss and history; no modules or buffers."""
        w, b = self.get_params()
        return {
            "layer_sizes": list(self.layout.sizes),
            "activations": list(self.activations),
            "backend": self.backend,
            "device": self._device_arg if isinstance(self._device_arg, str | int | type(None)) else None,
            "dtype": self.dtype_name,
            "w": w,
            "b": b,
            "loss_": self.loss_,
            "history_": self.history_,
            "preprocessing": self.preprocessing,
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
        self.preprocessing = state.get("preprocessing")
