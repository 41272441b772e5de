"""``FlatMLP``: a multilayer perceptron whose parameters live in ONE flat buffer on any Array API backend.

The class is the front door: it checks arguments, builds its parameter state
(:class:`flatnet_xp.params.FlatParams`, which owns the buffers, views, workspaces and optimizer
state) and hands every job to the layer that does it: the math to :mod:`flatnet_xp.functional`
through the parameter state, training to :mod:`flatnet_xp.training`, files to
:mod:`flatnet_xp.persistence`, PyTorch exchange to :mod:`flatnet_xp.interop`. Nothing below it
imports it.
"""

from __future__ import annotations

import functools
import numbers
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from flatnet_xp import persistence
from flatnet_xp._data import Dataset, check_features
from flatnet_xp._memory import check_params_memory
from flatnet_xp._validation import as_data_array, check_dtype, check_finite, check_int, describe
from flatnet_xp.activations import ACTIVATIONS, sigmoid
from flatnet_xp.backends import get_backend
from flatnet_xp.export import write_onnx
from flatnet_xp.history import Callback, History
from flatnet_xp.init import INITS, initialize
from flatnet_xp.interop import read_torch, to_torch
from flatnet_xp.layout import Layout
from flatnet_xp.losses import Loss, get_loss, softmax
from flatnet_xp.metrics import evaluate_dataset, raise_overflow
from flatnet_xp.optim import Optimizer
from flatnet_xp.params import GRAD_EXTRA_SLOTS, FlatParams, Head
from flatnet_xp.solvers import LBFGS
from flatnet_xp.training import RunSpec
from flatnet_xp.training import fit as run_fit
from flatnet_xp.training.resume import finite_host_params

__all__ = ["FlatMLP"]

#: Rows per chunk in ``predict``: bounds the activation buffers whatever the size of ``X``.
PREDICT_BATCH = 4096


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


def _probabilities(xp: Any, z: Any) -> Any:
    """Softmax of the outputs ``(n, L_n)``, sigmoid for a single output."""
    return sigmoid(xp, z) if z.shape[1] == 1 else softmax(xp, z)


def _classes(xp: Any, z: Any) -> Any:
    """Class indices ``(n,)``: argmax of the outputs, ``logit > 0`` for a single output."""
    if z.shape[1] == 1:
        return xp.astype(z[:, 0] > 0, xp.int64)
    return xp.argmax(z, axis=1)


_F = TypeVar("_F", bound=Callable[..., Any])


def _scoped(method: _F) -> _F:
    """Run a public method inside the network's precision scope (JAX: scoped x64 on or off)."""

    @functools.wraps(method)
    def wrapper(self: FlatMLP, *args: Any, **kwargs: Any) -> Any:
        p = self._params
        with p.backend.precision(p.dtype_name):
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
    flat_params : FlatParams
        The parameter state that owns all of these (buffers, views, workspaces, optimizer state):
        what optimizers and engines work on.
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
        Inference on finite inputs whose outputs overflow the dtype raises ``ValueError`` (never
        NaN answers).

    Notes
    -----
    Inference (``predict``, ``forward``, ``predict_proba``, ``predict_class``, ``evaluate``,
    ``score``, ``loss_and_grad``) is safe from any number of threads: each thread gets its own
    activation buffers. Two concurrent ``fit`` calls on one network raise ``RuntimeError``, and so
    does a ``fit`` started from inside this network's own ``fit`` (a callback).

    On JAX, inference programs are compiled for a few row counts only: each batch is padded to the
    next power of two rows (at least 8), so predicting on many different numbers of rows compiles
    a handful of programs, not one per row count.

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
        layout = Layout(layer_sizes)
        acts = _check_activations(activations, layout.n_layers)
        dtype_name = check_dtype(dtype)
        if init not in INITS:
            raise ValueError(f"init: expected one of {list(INITS)}, got {init!r}")
        rng = _check_seed(seed)
        be = get_backend(backend, device)
        check_params_memory(layout, dtype_name, GRAD_EXTRA_SLOTS, be.is_gpu)
        self._device_arg = device
        self._params = FlatParams(be, layout, acts, dtype_name)
        self._params.allocate(lambda write_w, write_b: initialize(init, layout, acts, rng, write_w, write_b))
        self._fit_lock = threading.Lock()
        self._fit_thread: int | None = None
        self.loss_: str | Loss | None = None
        self.history_: History | None = None
        self.preprocessing: Any = None

    # ----------------------------------------------------------------- description of the network
    @property
    def flat_params(self) -> FlatParams:
        """The parameter state: the buffers, views, workspaces and optimizer state of this network."""
        return self._params

    @property
    def layout(self) -> Layout:
        """Sizes and offsets of every layer inside ``w`` and ``b`` (backend-free, immutable)."""
        return self._params.layout

    @property
    def activations(self) -> tuple[str, ...]:
        """One activation name per weight layer."""
        return self._params.activations

    @property
    def dtype_name(self) -> str:
        """``"float32"`` or ``"float64"``."""
        return self._params.dtype_name

    @property
    def dtype(self) -> Any:
        """The backend's dtype object of every parameter, gradient and activation."""
        return self._params.dtype

    @property
    def backend(self) -> str:
        """Name of the backend (``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"``)."""
        return self._params.backend.name

    @property
    def device(self) -> Any:
        """The device the arrays live on, as the backend names it (``"cpu"`` for NumPy, a
        ``torch.device``, a ``cupy.cuda.Device``, a ``jax.Device``)."""
        return self._params.backend.device

    @property
    def xp(self) -> Any:
        """The Array API namespace of the network's arrays."""
        return self._params.xp

    # ----------------------------------------------------------------- public parameter access
    @property
    def params(self) -> Any:
        """The ONE parameter buffer ``[w, b]``, shape ``(w_len + b_len,)`` (assigning copies values in)."""
        return self._params.flat

    @params.setter
    def params(self, value: Any) -> None:
        value = as_data_array("params", value, ndims=(1,))
        n = self.layout.n_params
        if int(value.shape[0]) != n:
            raise ValueError(f"params: expected a 1-D array of length {n} (w then b), got {describe(value)}")
        w_len = self.layout.w_len
        self.set_params(value[:w_len], value[w_len:])

    @property
    def grads(self) -> Any:
        """The flat gradient buffer ``[dw, db]`` that ``fit`` writes into, laid out like ``params``
        (allocated on first use); :meth:`loss_and_grad` returns new arrays instead."""
        return self._params.grads

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
        return self._params.views.W[self._check_layer(k)]

    def bias(self, k: int) -> Any:
        """Layer ``k``'s biases, shape ``(L_{k+1},)``: a zero-copy view of ``b``."""
        return self._params.views.b[self._check_layer(k)]

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
        self._params.set_host(w, b)

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(w, b)`` as NumPy arrays."""
        p = self._params.host()
        return p[: self.layout.w_len].copy(), p[self.layout.w_len :].copy()

    # ----------------------------------------------------------------- inference
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
            ``X`` has the wrong number of columns, or holds NaN, inf or values beyond the dtype's
            range, or finite values whose outputs overflow the dtype.
        """
        return self._answer(X, batch_size, None)

    @_scoped
    def predict_proba(self, X: Any) -> Any:
        """Softmax of the outputs (sigmoid when there is a single output); shape (n, L_n)."""
        return self._answer(X, PREDICT_BATCH, _probabilities)

    @_scoped
    def predict_class(self, X: Any) -> Any:
        """Predicted class index: argmax of the outputs, or ``logit > 0`` for one output; shape (n,)."""
        return self._answer(X, PREDICT_BATCH, _classes)

    def _answer(self, X: Any, batch_size: int | None, head: Head | None) -> Any:
        """``head`` of the outputs for ``X``, checked at the boundary; overflowing outputs raise."""
        X = check_features(X, self.layout.sizes[0])
        n = int(X.shape[0])
        step = n if batch_size is None else check_int("batch_size", batch_size, 1)
        check_finite("X", X, np.dtype(self.dtype_name))  # NaN in, NaN out would be a silent wrong answer
        p = self._params
        data = Dataset.features_only(p.backend, self.dtype_name, X)
        with np.errstate(all="ignore"):  # an overflow is reported below, as a ValueError, not a warning
            answer = p.predict(data.batch_x, n, min(step, n), head)
        if not answer.finite:  # finite inputs, overflowing outputs: never a NaN answer
            raise_overflow(self.dtype_name, "X")
        return answer.values

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
        p = self._params
        data = p.dataset(X, Y, loss_fn, sample_weight=sample_weight, check_values=False)
        x, y, sw = data.batch(slice(None), normalize="global")
        value, flat = p.loss_and_grad(x, y, sw, loss_fn)
        w_len = self.layout.w_len
        return float(value), flat[:w_len], flat[w_len:]

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
        data = self._params.dataset(X, Y, loss_fn, sample_weight=sample_weight)
        step = check_int("batch_size", batch_size, 1)
        return evaluate_dataset(self._params, data, loss_fn, step, check=True).loss

    @_scoped
    def score(self, X: Any, y: Any, loss: str | Loss | None = None, sample_weight: Any = None) -> float:
        """Accuracy for classification losses (cross_entropy, bce), R^2 of the predictions for the others
        (the outputs for mse, their exponential, the predicted rate, for poisson); R^2 is NaN for fewer
        than two samples, as in scikit-learn.

        ``loss`` defaults to the loss the network was last trained with (also after :meth:`load`),
        else mse. Inputs are checked as in :meth:`evaluate`.
        """
        loss_fn = get_loss(loss or self.loss_ or "mse")
        data = self._params.dataset(X, y, loss_fn, sample_weight=sample_weight)
        scores = evaluate_dataset(self._params, data, loss_fn, PREDICT_BATCH, r2=not loss_fn.classification, check=True)
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
    def _file_meta(self, kind: str = "model", loss: str | Loss | None = None) -> dict[str, Any]:
        prep = self.preprocessing
        return persistence.model_meta(
            kind, self.layout.sizes, self.activations, self.dtype_name, loss if loss is not None else self.loss_,
            None if prep is None else prep.to_dict(),
        )  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model (architecture, dtype, ``w``, ``b``, loss, preprocessing) to ONE safetensors
        file, atomically (see :mod:`flatnet_xp.persistence`).

        Raises
        ------
        ValueError
            Non-finite parameters; a path that is a directory, device, FIFO or in a missing folder.
        TypeError
            ``path`` is not a path.
        """
        from flatnet_xp._atomic import check_output_path

        check_output_path(path, "path")
        persistence.write_file(path, finite_host_params(self._params, "save"), self._file_meta(), "path")

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
        meta, tensors = persistence.read_file(path)
        net = cls(meta["layer_sizes"], meta["activations"], backend=backend or "numpy",
                  dtype=dtype or meta["dtype"], device=device)  # fmt: skip
        net.set_params(tensors["w"], tensors["b"])
        net.loss_, net.preprocessing = meta["loss"], meta.get("preprocessing")
        return net

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
        return to_torch(self.layout, self.activations, self.dtype_name, self._params.host())

    def torch_state_dict(self) -> dict[str, Any]:
        """``state_dict`` of :meth:`to_torch`'s Sequential (keys ``"0.weight"``, ``"0.bias"``, ...)."""
        return dict(self.to_torch().state_dict())

    def to_onnx(
        self, path: str | os.PathLike[str], *, dtype: Any = None, opset: int | None = None, preprocessing: bool = True
    ) -> None:
        """Write the network as an ONNX model, atomically (``pip install 'flatnet_xp[onnx]'``).

        Input ``X`` (batch, L_1); outputs ``output`` (what :meth:`predict` returns) and, by
        :attr:`loss_`, ``probabilities`` and ``label`` (:meth:`predict_proba`,
        :meth:`predict_class`) or ``rate`` (poisson: ``exp(output)``); with ``preprocessing``
        and a stored :attr:`preprocessing`, ``X`` is the raw columns and the outputs are those of
        ``flatnet-xp predict`` (see :mod:`flatnet_xp.export`). ``dtype`` defaults to the network's;
        ``opset`` to :data:`flatnet_xp.export.DEFAULT_OPSET`.

        Raises
        ------
        ValueError, TypeError
            A bad path (a directory, a missing folder), dtype or opset; a stored preprocessing step
            with no ONNX form (named); float64 weights beyond float32's range with
            ``dtype="float32"``. Nothing is written then.
        ImportError
            onnx is not installed.
        """
        if not isinstance(preprocessing, bool):
            raise TypeError(f"preprocessing: expected a bool, got {describe(preprocessing)}")
        prep = self.preprocessing.to_dict() if preprocessing and self.preprocessing is not None else None
        host = finite_host_params(self._params, "to_onnx")
        flat = np.concatenate([host["w"], host["b"]])
        chosen = self.dtype_name if dtype is None else dtype
        write_onnx(path, self.layout, self.activations, flat, dtype=chosen, opset=opset, loss=self.loss_,
                   preprocessing=prep)  # fmt: skip

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
        (then ``activations`` is required). No transpose: our layout is ``nn.Linear.weight``'s.

        bfloat16 and float16 weights are read exactly (as float32); modules on the meta device (no
        values) are refused with a ValueError naming ``module``.
        """
        found = read_torch(module)
        if found.activations is not None and activations is not None:
            raise ValueError("activations: read from the Sequential's modules; pass it only with a state_dict")
        if found.activations is None and activations is None:
            raise ValueError("activations: required with a state_dict (it holds no activation modules)")
        chosen = found.activations if found.activations is not None else activations
        assert chosen is not None
        net = cls(found.sizes, chosen, backend=backend, dtype=dtype or found.dtype_name, device=device)
        net.set_params(found.w, found.b)
        return net

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
        """Train on ``(X, Y)`` with mini-batch gradient descent (or full-batch L-BFGS).

        Parameters
        ----------
        X : array or scipy.sparse matrix, shape (n, L_1)
            NumPy or the network's backend. Data already in the network's backend and dtype is used
            without any copy; otherwise each batch is converted on its own (the dataset is never copied;
            a sparse matrix is densified one batch at a time).
        Y : array, shape (n, L_n)
            Targets; ``(n,)`` for one output, or integer class labels with ``loss="cross_entropy"``.
        epochs : int, default 10
            Total number of epochs (with ``resume``: including those already run). Not used by L-BFGS.
        batch_size : int, default 32
            From 1 (per-sample SGD) to ``n`` (full batch); the last batch may be smaller.
        optimizer : Optimizer or LBFGS, default ``Adam(lr=1e-3)``
            Keeps its state across ``fit`` calls on the same network. :class:`~flatnet_xp.LBFGS` runs
            scipy's L-BFGS-B full-batch on the flat parameter vector instead of epochs.
        loss : {"mse", "cross_entropy", "bce", "poisson"} or Loss
        sample_weight : array, shape (n,), optional
            Non-negative weights: each batch's loss is the weighted average of its samples' losses.
        shuffle : bool or callable, default True
            Visit the samples in a new random order each epoch, drawn from ``seed``; or a function
            ``order(epoch, n)`` returning the epoch's order (a permutation of ``range(n)``, an int
            array), called once per epoch (not with ``checkpoint``, ``resume`` or ``comm``).
        seed : int, optional
            Seed of the shuffling generator (``numpy.random.SeedSequence``).
        validation_data : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), optional
            Evaluated after each epoch: ``history.val_loss``, ``history.val_score`` (accuracy or R^2)
            and, for classification losses, ``history.val_accuracy``.
        patience : int, optional
            Early stopping: stop after ``patience`` epochs without an improvement of more than
            ``min_delta`` in the validation loss (the training loss without validation data), and
            restore the best weights (one flat copy is kept).
        min_delta : float, default 0
        callbacks : callable or list of callables, optional
            ``callback(net, history)`` after each epoch; returning True stops training.
        progress : bool, optional
            tqdm bars over epochs and batches; default: on when stderr is a terminal.
        checkpoint : path, optional
            Write model, optimizer state, epoch, shuffle state, history and the run's signature
            atomically every ``checkpoint_every`` epochs; the last one, written after early stopping
            restored the best weights, holds exactly what ``fit`` returns. Checked before training.
        checkpoint_every : int, default 1
        resume : path, optional
            Continue the run saved in a checkpoint until ``epochs`` epochs in total. The checkpoint
            must come from the same run (network, dtype, loss, optimizer and its hyperparameters,
            batch size, shuffle, seed, and the same training and validation data): anything else is a
            ``ValueError`` naming each difference. A finished run returns at once with its weights.
        comm : mpi4py communicator, optional
            Data-parallel training: every rank passes its own shard; see :mod:`flatnet_xp.distributed`.
        initial_epoch : int, default 0
            Count epochs from here (Keras's ``initial_epoch``): train epochs ``initial_epoch + 1`` to
            ``epochs``, each shuffled as that epoch of a run started from 0 with the same ``seed``, so
            ``fit(epochs=k + 1, initial_epoch=k)`` called for ``k = 0, 1, ...`` visits the samples in the
            same orders as one ``fit(epochs=K)``.

        Returns
        -------
        History
            Also stored as ``history_``.

        Raises
        ------
        ValueError, TypeError
            Bad arguments, data or paths, before any work is done.
        RuntimeError
            Another ``fit`` is running on this network (in another thread, or this one: a ``fit``
            called from one of its callbacks).
        DivergenceError
            The loss, gradient or update became non-finite; the parameters and optimizer state were
            restored (see :class:`~flatnet_xp.DivergenceError`).
        """
        me = threading.get_ident()
        if not self._fit_lock.acquire(blocking=False):
            if self._fit_thread == me:
                raise RuntimeError(
                    "fit: called from inside this network's own fit (a callback?); return True from the callback "
                    "to stop training, then call fit again, or train a copy (net.copy())"
                )
            raise RuntimeError(
                "fit: another fit is already running on this network (in another thread); "
                "train independent copies (net.copy()) in parallel instead"
            )
        self._fit_thread = me
        trained: list[str | Loss] = []

        def started(run: RunSpec) -> None:
            trained.append(run.loss.name if run.loss.scale == 1.0 else run.loss)
            self.loss_ = trained[0]

        try:
            history = run_fit(
                self._params, X, Y, sample_weight=sample_weight, validation_data=validation_data, comm=comm,
                model=self, model_meta=lambda: self._file_meta("checkpoint", trained[0]), on_start=started,
                epochs=epochs, batch_size=batch_size, optimizer=optimizer, loss=loss, shuffle=shuffle, seed=seed,
                patience=patience, min_delta=min_delta, callbacks=callbacks, progress=progress, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, resume=resume, initial_epoch=initial_epoch,
            )  # fmt: skip
        finally:
            self._fit_thread = None
            self._fit_lock.release()
        self.history_ = history
        return history

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
            "uid": self._params.uid,
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
        self._params.uid = state.get("uid", self._params.uid)
        self.preprocessing = state.get("preprocessing")
