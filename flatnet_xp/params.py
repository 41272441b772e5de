"""The parameter state: the ONE owner of a network's numbers.

:class:`FlatParams` holds the flat parameter buffer ``[w, b]``, its gradient buffer (with spare
slots behind it for the data-parallel code), the layer views of both, per-thread activation
workspaces, and the optimizer state that belongs to these parameters. Everything that reads or
writes a network's numbers (the network class, the engines that train it, the files, the
distributed code, the scikit-learn estimators) goes through it, and the backend rule "write into the
buffer, or rebind it" (:meth:`flatnet_xp.backends.Backend.assign`) is applied here only.

How the math runs is chosen once, by the backend: in place with preallocated workspaces on mutable
backends (NumPy, CuPy, PyTorch, array-api-strict), as compiled programs of the same functions on
JAX, whose inference programs are compiled for a few row counts only (each batch is padded to the
next power of two), never once per number of rows.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._blocks import Blocks
from flatnet_xp._data import Dataset
from flatnet_xp.backends import Backend, to_numpy
from flatnet_xp.layout import Layout
from flatnet_xp.losses import Loss, get_loss

__all__ = ["GRAD_EXTRA_SLOTS", "FlatParams", "OptimizerState", "Snapshot"]

#: Slots after the flat gradient reserved for data-parallel control values.
GRAD_EXTRA_SLOTS = 5
#: Workspaces (one per batch size) each thread keeps for inference.
_MAX_WORKSPACES = 4
#: Largest batch whose workspace a thread keeps for reuse.
_KEPT_WORKSPACE_ROWS = 4096
#: Smallest row bucket of compiled inference programs.
_MIN_BUCKET = 8


@dataclass
class OptimizerState:
    """An optimizer's state for one parameter buffer (owned by that buffer's :class:`FlatParams`).

    Attributes
    ----------
    owner : weakref.ref
        The optimizer whose state this is: another optimizer starts afresh.
    t : int
        Updates made so far.
    buffers : dict of str to array
        Flat state buffers the length of the parameters (momentum, moments), by name.
    scratch : list of arrays
        One scratch buffer per worker thread for in-place updates (``NO_OUT`` on JAX).
    blocks : Blocks
        How the in-place update is split into cache-sized blocks and threads.
    w_len : int
        Where the weights end in the flat buffer (weight decay applies before it).
    """

    owner: weakref.ref[Any]
    t: int
    buffers: dict[str, Any]
    scratch: list[Any] = field(default_factory=list)
    blocks: Blocks = field(default_factory=lambda: Blocks(0, enabled=False))
    w_len: int = 0


@dataclass
class Snapshot:
    """A copy of the parameters (and of the optimizer state, when taken with it) to restore later."""

    flat: Any
    t: int | None = None
    buffers: dict[str, Any] = field(default_factory=dict)


#: Compiled inference programs by (spec, loss or None, compiling backend class).
_PROGRAMS: dict[tuple[Any, ...], Callable[..., Any]] = {}
_MAX_PROGRAMS = 64


def _program(spec: F.Spec, loss: Loss | None, backend: Backend) -> Callable[..., Any]:
    """The compiled forward pass (``loss`` None) or loss-and-gradient of ``spec``, built once."""
    key = (spec, loss, type(backend))
    fn = _PROGRAMS.get(key)
    if fn is None:
        if len(_PROGRAMS) >= _MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))

        def fwd(flat: Any, x: Any) -> Any:
            return F.forward(spec, F.layer_views(spec, flat), x, F.Workspace(spec, int(x.shape[0])))

        def lag(flat: Any, x: Any, y: Any, sw: Any) -> tuple[Any, Any]:
            assert loss is not None
            ws = F.Workspace(spec, int(x.shape[0]))
            value, parts = F.loss_and_grad(spec, F.layer_views(spec, flat), x, y, sw, loss, ws, None)
            return value, F.flat_gradient(spec, parts)

        fn = _PROGRAMS[key] = backend.compile(fwd if loss is None else lag)
    return fn


#: What to answer from a network's outputs: ``head(xp, z)`` for ``z`` ``(n, L_n)``.
Head = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Prediction:
    """What :meth:`FlatParams.predict` answers: the values and whether the outputs were finite."""

    values: Any
    finite: bool


def row_bucket(n: int) -> int:
    """Rows a compiled inference program is built for: the next power of two (at least 8)."""
    return max(_MIN_BUCKET, 1 << (n - 1).bit_length())


def pad_rows(host: np.ndarray, rows: int) -> np.ndarray:
    """``host`` with zero rows appended up to ``rows`` (itself when it has them): padding done on the
    host, where nothing is compiled per shape (an eager JAX op on a new shape is)."""
    n = int(host.shape[0])
    if rows == n:
        return host
    return np.concatenate([host, np.zeros((rows - n, *host.shape[1:]), dtype=host.dtype)], axis=0)


class FlatParams:
    """ONE flat parameter buffer, its gradient, views, workspaces and optimizer state.

    Parameters
    ----------
    backend : Backend
    layout : Layout
    activations : sequence of str
        One activation name per weight layer.
    dtype_name : {"float32", "float64"}

    Attributes
    ----------
    flat : array of the backend, shape (n_params,)
        The parameters ``[w, b]``: updated in place on mutable backends, replaced on JAX.
    spec : functional.Spec
        What the network computes (layout, activations, namespace, kernels, dtype, device).
    optimizer_state : OptimizerState or None
        The state of the optimizer that last updated these parameters.
    """

    def __init__(self, backend: Backend, layout: Layout, activations: tuple[str, ...], dtype_name: str) -> None:
        self.backend, self.layout, self.activations, self.dtype_name = backend, layout, tuple(activations), dtype_name
        self.xp = backend.xp
        self.dtype = getattr(backend.xp, dtype_name)
        self.spec = F.Spec.build(layout, self.activations, backend.xp, backend.ops, self.dtype, backend.device)
        self.flat: Any = None
        self.optimizer_state: OptimizerState | None = None
        #: Identifies these parameters across pickling (a pickled optimizer's state returns to them only).
        self.uid = secrets.token_hex(8)
        self._views: F.Views | None = None
        self._views_of: Any = None
        self._grad_parent: Any = None
        self._grad_views: F.Views | None = None
        self._local = threading.local()
        self._math: _Math = _InPlace(self) if backend.mutable else _Compiled(self)

    # ----------------------------------------------------------------- construction
    def allocate(self, fill: Callable[[Callable[..., None], Callable[..., None]], None]) -> None:
        """Allocate the zeroed buffer and let ``fill(write_w, write_b)`` write initial values into it
        (``write_w(k, rows, cols, values)`` a block of ``W_k``, ``write_b(k, values)`` ``b_k``).

        Mutable backends are filled in place, block by block; JAX on the host, then placed once.

        Raises
        ------
        ValueError
            The backend could not allocate the buffer (named ``layer_sizes``).
        """
        lay, be = self.layout, self.backend
        if be.mutable:
            try:
                flat = self.xp.zeros(lay.n_params, dtype=self.dtype, device=be.device)
            except MemoryError as exc:  # also cupy's and torch's out-of-memory errors
                raise ValueError(f"layer_sizes: could not allocate {lay.n_params:,} parameters ({exc})") from None
            views = F.layer_views(self.spec, flat)

            def write_w(k: int, rows: slice, cols: slice, values: np.ndarray) -> None:
                views.W[k][rows, cols] = be.asarray(values, dtype=self.dtype)

            def write_b(k: int, values: np.ndarray) -> None:
                views.b[k][...] = be.asarray(values, dtype=self.dtype)

            fill(write_w, write_b)
            self.flat, self._views, self._views_of = flat, views, flat
            return
        host = np.zeros(lay.n_params, dtype=self.dtype_name)
        hw = [host[lay.w_slice(k)].reshape(lay.shapes[k]) for k in range(lay.n_layers)]
        hb = [host[lay.w_len + lay.b_offsets[k] : lay.w_len + lay.b_offsets[k + 1]] for k in range(lay.n_layers)]
        fill(lambda k, r, c, v: hw[k].__setitem__((r, c), v), lambda k, v: hb[k].__setitem__(slice(None), v))
        self.flat = be.asarray(host, dtype=self.dtype)

    # ----------------------------------------------------------------- views and buffers
    @property
    def views(self) -> F.Views:
        """Layer views of the current parameters: made once on mutable backends (the buffer never
        moves), made again after the parameters were replaced on JAX."""
        if self._views_of is not self.flat:
            with self.backend.precision(self.dtype_name):
                self._views = F.layer_views(self.spec, self.flat)
            self._views_of = self.flat
        assert self._views is not None
        return self._views

    @property
    def grad_parent(self) -> Any:
        """The gradient buffer with its :data:`GRAD_EXTRA_SLOTS` spare slots (allocated on first use)."""
        if self._grad_parent is None:
            n, be = self.layout.n_params, self.backend
            self._grad_parent = self.xp.zeros(n + GRAD_EXTRA_SLOTS, dtype=self.dtype, device=be.device)
            if be.mutable:
                self._grad_views = F.layer_views(self.spec, self._grad_parent[:n])
        return self._grad_parent

    @property
    def grads(self) -> Any:
        """The flat gradient ``[dw, db]`` that training writes, laid out like :attr:`flat`."""
        return self.grad_parent[: self.layout.n_params]

    @property
    def grad_views(self) -> F.Views | None:
        """Layer views of :attr:`grads` (mutable backends), else None."""
        self.grad_parent  # noqa: B018 - allocates the buffer and its views
        return self._grad_views

    @property
    def allocated_grads(self) -> bool:
        """Whether the gradient buffer exists already (memory checks count it otherwise)."""
        return self._grad_parent is not None

    def workspace(self, n: int) -> F.Workspace:
        """This thread's activation buffers for batch size ``n`` (a few sizes are kept per thread)."""
        try:
            cache = self._local.workspaces
        except AttributeError:
            cache = self._local.workspaces = {}
        ws = cache.get(n)
        if ws is None:
            ws = F.Workspace(self.spec, n)
            if n <= _KEPT_WORKSPACE_ROWS:  # keep small ones for reuse; a one-off huge forward is not kept
                if len(cache) >= _MAX_WORKSPACES:
                    cache.pop(next(iter(cache)))
                cache[n] = ws
        return ws

    # ----------------------------------------------------------------- reading and writing
    def assign(self, flat: Any) -> None:
        """Make ``flat`` (a backend array of this dtype, shape ``(n_params,)``) the parameters."""
        self.flat = self.backend.assign(self.flat, flat)

    def set_host(self, w: Any, b: Any) -> None:
        """Copy checked values of ``w`` and ``b`` (NumPy or any backend's arrays) into the parameters.

        Raises
        ------
        ValueError
            Wrong length, wrong dimensionality or non-finite values (also values that overflow the
            dtype); named ``w`` or ``b``.
        TypeError
            Non-numeric input.
        """
        from flatnet_xp._validation import as_data_array, describe

        new = []
        for name, value, length in (("w", w, self.layout.w_len), ("b", b, self.layout.b_len)):
            arr = as_data_array(name, value, ndims=(1,), numeric="fiu")
            if arr.shape[0] != length:
                raise ValueError(f"{name}: expected a 1-D array of length {length}, got {describe(arr)}")
            with np.errstate(over="ignore"):
                cast = np.asarray(to_numpy(arr)).astype(self.dtype_name)
            if not np.all(np.isfinite(cast)):
                raise ValueError(f"{name}: expected finite values within {self.dtype_name}'s range, found NaN or inf")
            new.append(cast)
        self.assign(self.backend.asarray(np.concatenate(new), dtype=self.dtype))

    def host(self) -> np.ndarray:
        """A NumPy copy of the parameters ``[w, b]``."""
        return np.array(to_numpy(self.flat))

    def snapshot(self, into: Snapshot | None = None, *, optimizer: bool = False) -> Snapshot:
        """A copy of the parameters (and, with ``optimizer``, of the optimizer state), written into
        ``into``'s buffers when given (no allocation); immutable arrays are their own copies."""
        be = self.backend
        flat = be.copy(self.flat, None if into is None else into.flat)
        snap = Snapshot(flat) if into is None else into
        snap.flat = flat
        state = self.optimizer_state
        if optimizer and state is not None:
            snap.t = state.t
            snap.buffers = {k: be.copy(v, snap.buffers.get(k)) for k, v in state.buffers.items()}
        return snap

    def restore(self, snap: Snapshot) -> None:
        """Put a :meth:`snapshot` back (the optimizer state too, when it was taken with it)."""
        self.assign(snap.flat)
        state = self.optimizer_state
        if snap.t is not None and state is not None:
            state.t = snap.t
            state.buffers = {k: self.backend.assign(v, snap.buffers[k]) for k, v in state.buffers.items()}

    def all_finite(self) -> bool:
        """True when the parameters and every optimizer state buffer hold only finite values.

        One summation per buffer (a finite sum: all finite); the exact element-wise test only when a
        sum is not finite, which large finite values can also cause.
        """
        xp, ops = self.xp, self.backend.ops
        buffers = [self.flat, *(() if self.optimizer_state is None else self.optimizer_state.buffers.values())]
        with self.backend.precision(self.dtype_name):
            for buf in buffers:
                if not bool(xp.isfinite(ops.total(buf))) and not bool(xp.all(xp.isfinite(buf))):
                    return False
        return True

    # ----------------------------------------------------------------- math
    def forward(self, x: Any) -> Any:
        """Outputs of the last layer for a backend batch ``x`` ``(n, L_1)``.

        On mutable backends the result is this thread's workspace buffer (copy it to keep it).
        """
        return self._math.forward(x)

    def predict(self, batch_x: Callable[[slice], Any], n: int, step: int, head: Head | None = None) -> Prediction:
        """Outputs for ``n`` rows computed ``step`` rows at a time (thread-safe).

        Parameters
        ----------
        batch_x : callable
            ``batch_x(rows)`` gives the backend batch ``(m, L_1)`` of a slice of rows.
        n, step : int
            Rows in all, rows per forward pass.
        head : callable, optional
            ``head(xp, z)``: what to answer from the outputs ``z`` ``(n, L_n)`` (probabilities,
            classes); applied by whichever namespace is cheapest (JAX: NumPy on the host, where
            nothing is compiled per row count).

        Returns
        -------
        Prediction
            ``values``: a new backend array, ``(n, L_n)`` or the head's shape; ``finite``: whether
            every output ``z`` was finite.
        """
        return self._math.predict(batch_x, n, step, head)

    def loss_and_grad_into(self, x: Any, y: Any, sw: Any, loss: Loss) -> Any:
        """Write the gradient of a backend batch into :attr:`grads`; returns the loss (0-d).
        Not thread-safe: the training step."""
        return self._math.loss_and_grad_into(x, y, sw, loss)

    def loss_and_grad(self, x: Any, y: Any, sw: Any, loss: Loss) -> tuple[Any, Any]:
        """Loss (0-d) and flat gradient of a backend batch, as NEW arrays (thread-safe)."""
        return self._math.loss_and_grad(x, y, sw, loss)

    def dataset(
        self,
        X: Any,
        Y: Any,
        loss: str | Loss,
        *,
        sample_weight: Any = None,
        check_values: bool = True,
        suffix: str = "",
    ) -> Dataset:
        """``(X, Y, sample_weight)`` checked against this network (names get ``suffix``, e.g. ``_val``)."""
        sizes = self.layout.sizes
        return Dataset(
            self.backend,
            self.dtype_name,
            X,
            Y,
            sizes[0],
            sizes[-1],
            get_loss(loss),
            sample_weight=sample_weight,
            check_values=check_values,
            names=("X" + suffix, "Y" + suffix, "sample_weight" + suffix),
        )


class _Math:
    """How the functions of :mod:`flatnet_xp.functional` run for one parameter state."""

    def __init__(self, params: FlatParams) -> None:
        self.p = params

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def predict(self, batch_x: Callable[[slice], Any], n: int, step: int, head: Head | None) -> Prediction:
        raise NotImplementedError

    def loss_and_grad_into(self, x: Any, y: Any, sw: Any, loss: Loss) -> Any:
        raise NotImplementedError

    def loss_and_grad(self, x: Any, y: Any, sw: Any, loss: Loss) -> tuple[Any, Any]:
        raise NotImplementedError


class _InPlace(_Math):
    """Mutable backends: the functions write into preallocated buffers and the flat gradient's views."""

    def forward(self, x: Any) -> Any:
        p = self.p
        return F.forward(p.spec, p.views, x, p.workspace(int(x.shape[0])))

    def predict(self, batch_x: Callable[[slice], Any], n: int, step: int, head: Head | None) -> Prediction:
        p = self.p
        out = p.xp.empty((n, p.layout.sizes[-1]), dtype=p.dtype, device=p.backend.device)
        for lo in range(0, n, step):
            hi = min(lo + step, n)  # in-bounds slices only (the Array API leaves others unspecified)
            out[lo:hi, ...] = self.forward(batch_x(slice(lo, hi)))
        finite = p.backend.all_finite(out)
        return Prediction(out if head is None else head(p.xp, out), finite)

    def loss_and_grad_into(self, x: Any, y: Any, sw: Any, loss: Loss) -> Any:
        p = self.p
        grad_views = p.grad_views
        value, _ = F.loss_and_grad(p.spec, p.views, x, y, sw, loss, p.workspace(int(x.shape[0])), grad_views)
        return value

    def loss_and_grad(self, x: Any, y: Any, sw: Any, loss: Loss) -> tuple[Any, Any]:
        p = self.p
        flat = p.xp.zeros(p.layout.n_params, dtype=p.dtype, device=p.backend.device)
        ws = F.Workspace(p.spec, int(x.shape[0]))
        value, _ = F.loss_and_grad(p.spec, p.views, x, y, sw, loss, ws, F.layer_views(p.spec, flat))
        return value, flat


class _Compiled(_Math):
    """Immutable backends: the same functions compiled into programs (cached per network shape)."""

    def forward(self, x: Any) -> Any:
        return self.p.backend.asarray(self._forward_host(x))

    def _forward_host(self, x: Any) -> np.ndarray:
        """Outputs for the rows of ``x`` as a host array, computed by the program of ``x``'s row bucket.

        Every shape-dependent step (padding the rows, cutting the outputs) runs on the host:
        an eager JAX operation on a new shape is compiled like a program (measured: 14-70 ms
        each), which made ``predict`` on 300 different row counts take a minute.
        """
        p = self.p
        n = int(x.shape[0])
        bucket = row_bucket(n)
        if bucket != n:
            x = p.backend.asarray(pad_rows(np.asarray(x), bucket))
        with p.backend.precision(p.dtype_name):
            z = _program(p.spec, None, p.backend)(p.flat, x)
        return np.asarray(z)[:n]

    def predict(self, batch_x: Callable[[slice], Any], n: int, step: int, head: Head | None) -> Prediction:
        parts = [self._forward_host(batch_x(slice(lo, min(lo + step, n)))) for lo in range(0, n, step)]
        z = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        finite = bool(np.isfinite(z).all())
        with np.errstate(all="ignore"):
            values = z if head is None else np.asarray(head(np, z))
        if values.dtype.kind in "iub":  # class indices in the backend's integer width for this precision
            values = values.astype(np.dtype(self.p.backend.index_dtype(self.p.dtype_name)))
        return Prediction(self.p.backend.asarray(values), finite)

    def loss_and_grad_into(self, x: Any, y: Any, sw: Any, loss: Loss) -> Any:
        p = self.p
        value, p._grad_parent = self.loss_and_grad(x, y, sw, loss)
        return value

    def loss_and_grad(self, x: Any, y: Any, sw: Any, loss: Loss) -> tuple[Any, Any]:
        p = self.p
        with p.backend.precision(p.dtype_name):
            return _program(p.spec, loss, p.backend)(p.flat, x, y, sw)
