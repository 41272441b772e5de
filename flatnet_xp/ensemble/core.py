"""``FlatEnsemble``: E networks of one shape in ONE ``(E, n_params)`` buffer, trained together."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._data import Dataset
from flatnet_xp._validation import check_dtype, check_int, describe
from flatnet_xp.backends import get_backend, to_numpy
from flatnet_xp.ensemble import _math as M
from flatnet_xp.ensemble._files import read_ensemble, write_ensemble
from flatnet_xp.ensemble._fit import check_memory, fit_ensemble, host_targets
from flatnet_xp.ensemble._inference import Inference
from flatnet_xp.export import write_ensemble_onnx
from flatnet_xp.history import History
from flatnet_xp.init import INITS, initialize
from flatnet_xp.layout import Layout
from flatnet_xp.losses import get_loss
from flatnet_xp.network import FlatMLP, _check_activations

__all__ = ["FlatEnsemble"]


def _member_rngs(seed: Any, n_models: int) -> list[np.random.Generator]:
    """One generator per member: ``seed`` an int (spawned into independent streams), None (fresh
    entropy, spawned), or a sequence of ``n_models`` ints (member ``i`` draws as ``FlatMLP(seed=seed[i])``)."""
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        seeds = list(seed)
        if len(seeds) != n_models:
            raise ValueError(f"seed: expected an int or {n_models} ints (one per member), got {len(seeds)} values")
        return [np.random.default_rng(check_int("seed", s, 0)) for s in seeds]
    if seed is not None:
        check_int("seed", seed, 0)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_models)]


class FlatEnsemble(Inference):
    """E multilayer perceptrons of one shape whose parameters are the rows of ONE ``(E, n_params)`` buffer.

    Every layer of every member is a zero-copy ``(E, L_out, L_in)`` view of that buffer; a training
    step is a few batched matmuls and one whole-buffer optimizer update for all members at once
    (per-member hyperparameters as ``(E, 1)`` columns). Member ``i`` trained here equals the same
    :class:`~flatnet_xp.FlatMLP` trained alone with the same seed, order and hyperparameters.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths, input first (as :class:`~flatnet_xp.FlatMLP`).
    n_models : int
        Number of members ``E`` (at least 1).
    activations, backend, dtype, device, init
        As :class:`~flatnet_xp.FlatMLP`.
    seed : int or sequence of int, optional
        An int: the members' generators are ``numpy.random.SeedSequence(seed).spawn(n_models)``
        (independent streams; member ``i`` equals ``FlatMLP(seed=numpy.random.default_rng(
        SeedSequence(seed).spawn(E)[i]))``). A sequence of ``n_models`` ints: member ``i``'s initial
        weights equal ``FlatMLP(..., seed=seed[i])``'s bit for bit. None: fresh entropy.

    Attributes
    ----------
    params : array, shape (E, n_params)
        The ONE parameter buffer; row ``i`` is member ``i``'s ``[w, b]``.
    diverged_ : dict of int to int
        Members that diverged in the last ``fit`` and the epoch (from 1) it happened in.
    history_ : list of History or None
        One :class:`~flatnet_xp.History` per member from the last ``fit``.

    Examples
    --------
    >>> import numpy as np, flatnet_xp as fx
    >>> ens = fx.FlatEnsemble([3, 8, 1], 4, activations=["tanh", "identity"], dtype="float64", seed=[0, 1, 2, 3])
    >>> ens.params.shape, ens.weight(0).shape, ens.bias(1).shape
    ((4, 41), (4, 8, 3), (4, 1))
    >>> bool(np.array_equal(ens.params[2], fx.FlatMLP([3, 8, 1], ["tanh", "identity"], dtype="float64", seed=2).params))
    True
    """

    _flat: Any

    def __init__(
        self,
        layer_sizes: Sequence[int],
        n_models: int,
        activations: str | Sequence[str] = "sigmoid",
        *,
        backend: str | ModuleType = "numpy",
        dtype: Any = "float32",
        device: Any = None,
        seed: int | Sequence[int] | None = None,
        init: str = "auto",
    ) -> None:
        layout = Layout(layer_sizes)
        e = check_int("n_models", n_models, 1)
        acts = _check_activations(activations, layout.n_layers)
        dtype_name = check_dtype(dtype)
        if init not in INITS:
            raise ValueError(f"init: expected one of {list(INITS)}, got {init!r}")
        rngs = _member_rngs(seed, e)
        be = get_backend(backend, device)
        check_memory(e, layout.n_params, dtype_name, 1, 0, be.is_gpu, "n_models")
        self._setup(be, layout, acts, dtype_name, e, device)
        dt = self._dtype
        if be.mutable:
            flat = self.xp.zeros((e, layout.n_params), dtype=dt, device=be.device)
        else:  # JAX: drawn into a host buffer, placed once
            flat = np.zeros((e, layout.n_params), dtype=dtype_name)
        for i, rng in enumerate(rngs):
            if be.mutable:
                views = F.layer_views(self._spec, flat[i, :])
                w_views, b_views = views.W, views.b
            else:
                row = flat[i]
                w_views = [row[layout.w_slice(k)].reshape(layout.shapes[k]) for k in range(layout.n_layers)]
                b_views = [row[layout.w_len :][layout.b_slice(k)] for k in range(layout.n_layers)]

            def write_w(k: int, r: slice, c: slice, v: np.ndarray, vw: list[Any] = w_views) -> None:
                vw[k][r, c] = be.asarray(v, dtype=dt) if be.mutable else v

            def write_b(k: int, v: np.ndarray, vb: list[Any] = b_views) -> None:
                vb[k][...] = be.asarray(v, dtype=dt) if be.mutable else v

            initialize(init, layout, acts, rng, write_w, write_b)
        self._flat = flat if be.mutable else be.asarray(flat, dtype=dt)

    def _setup(self, be: Any, layout: Layout, acts: tuple[str, ...], dtype_name: str, e: int, device: Any) -> None:
        self._backend, self._layout, self._activations, self.dtype_name = be, layout, acts, dtype_name
        self.n_models = e
        self._device_arg = device
        self._dtype = getattr(be.xp, dtype_name)
        self._spec = F.Spec.build(layout, acts, be.xp, be.ops, self._dtype, be.device)
        self._flat = None
        self._views_cache: tuple[Any, M.Views] | None = None
        self._opt_state: tuple[Any, int, dict[str, Any]] | None = None
        self.diverged_: dict[int, int] = {}
        self.history_: list[History] | None = None

    @classmethod
    def _empty(cls, like: Any, n_models: int, dtype_name: str | None = None) -> FlatEnsemble:
        self = cls.__new__(cls)
        self._setup(like._backend, like._layout, like._activations, dtype_name or like.dtype_name, n_models,
                    like._device_arg)  # fmt: skip
        return self

    # ----------------------------------------------------------------- description
    @property
    def layout(self) -> Layout:
        """Sizes and offsets of every layer inside a member's ``w`` and ``b``."""
        return self._layout

    @property
    def activations(self) -> tuple[str, ...]:
        """One activation name per weight layer."""
        return self._activations

    @property
    def dtype(self) -> Any:
        """The backend's dtype object of the parameters."""
        return self._dtype

    @property
    def backend(self) -> str:
        """Name of the backend."""
        return str(self._backend.name)

    @property
    def device(self) -> Any:
        """The device the buffer lives on."""
        return self._backend.device

    @property
    def xp(self) -> Any:
        """The Array API namespace of the buffer."""
        return self._backend.xp

    # ----------------------------------------------------------------- the buffer and its views
    @property
    def params(self) -> Any:
        """The ONE parameter buffer, shape ``(E, n_params)`` (replaced, not written, on JAX)."""
        return self._flat

    @property
    def w(self) -> Any:
        """All members' weights, shape ``(E, w_len)``: a view of :attr:`params`."""
        return self._flat[:, : self._layout.w_len]

    @property
    def b(self) -> Any:
        """All members' biases, shape ``(E, b_len)``: a view of :attr:`params`."""
        return self._flat[:, self._layout.w_len :]

    def _views(self) -> M.Views:
        cache = self._views_cache
        if cache is None or cache[0] is not self._flat:
            with self._backend.precision(self.dtype_name):
                cache = self._views_cache = (self._flat, M.layer_views(self._spec, self._flat))
        return cache[1]

    def _check_layer(self, k: Any) -> int:
        n = self._layout.n_layers
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not -n <= int(k) < n:
            raise IndexError(f"k: expected a weight-layer index in [0, {n - 1}], got {k!r}")
        return int(k) % n

    def weight(self, k: int) -> Any:
        """Layer ``k``'s weights of every member, shape ``(E, L_{k+1}, L_k)``: a zero-copy view."""
        return self._views().W[self._check_layer(k)]

    def bias(self, k: int) -> Any:
        """Layer ``k``'s biases of every member, shape ``(E, L_{k+1})``: a zero-copy view."""
        return self._views().b[self._check_layer(k)]

    def _check_member(self, i: Any, name: str = "i") -> int:
        e = self.n_models
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not -e <= int(i) < e:
            raise IndexError(f"{name}: expected a member index in [0, {e - 1}], got {i!r}")
        return int(i) % e

    # ----------------------------------------------------------------- members
    def member(self, i: int) -> FlatMLP:
        """Member ``i`` as a :class:`~flatnet_xp.FlatMLP`.

        On mutable backends (NumPy, CuPy, PyTorch, array-api-strict) its parameters ARE row ``i`` of
        :attr:`params` (a zero-copy view): training or editing it changes this ensemble. On JAX,
        whose arrays are immutable, it is a copy (use :meth:`from_members` to put it back).
        """
        i = self._check_member(i)
        net = FlatMLP(self._layout.sizes, self._activations, backend=self._backend.name, dtype=self.dtype_name,
                      device=self._device_arg, seed=0)  # fmt: skip
        if self._backend.mutable:
            net.flat_params.flat = self._flat[i, :]
        else:
            row = np.asarray(to_numpy(self._flat[i, :]))
            net.set_params(row[: self._layout.w_len], row[self._layout.w_len :])
        return net

    @classmethod
    def from_members(cls, members: Sequence[FlatMLP]) -> FlatEnsemble:
        """An ensemble of copies of ``members`` (FlatMLPs of one shape, activations, backend and dtype)."""
        if not isinstance(members, Sequence) or not members or not all(isinstance(m, FlatMLP) for m in members):
            raise TypeError(f"members: expected a non-empty list of FlatMLP, got {describe(members)}")
        first = members[0]
        for j, m in enumerate(members):
            for what in ("layout", "activations", "backend", "dtype_name"):
                if getattr(m, what) != getattr(first, what):
                    raise ValueError(
                        f"members: member {j} has {what} {getattr(m, what)!r}, member 0 has {getattr(first, what)!r}"
                    )
        be = first.flat_params.backend
        self = cls.__new__(cls)
        self._setup(be, first.layout, first.activations, first.dtype_name, len(members), first._device_arg)
        with be.precision(self.dtype_name):
            self._flat = be.xp.stack([be.copy(m.params) for m in members])
        return self

    def select(self, indices: Sequence[int]) -> FlatEnsemble:
        """A new ensemble of copies of the members ``indices`` (in that order)."""
        if not isinstance(indices, Sequence) or isinstance(indices, str) or not indices:
            raise TypeError(f"indices: expected a non-empty list of member indices, got {describe(indices)}")
        rows = [self._check_member(i, "indices") for i in indices]
        new = FlatEnsemble._empty(self, len(rows))
        xp, be = self.xp, self._backend
        with be.precision(self.dtype_name):
            idx = be.asarray(np.asarray(rows, dtype=np.int64))
            new._flat = be.copy(xp.take(self._flat, idx, axis=0))
        return new

    def best(self, k: int, validation_data: tuple[Any, ...] | None = None, loss: str | None = None) -> FlatEnsemble:
        """The ``k`` members with the lowest validation loss, best first (a new ensemble, see :meth:`select`).

        Parameters
        ----------
        k : int
            From 1 to ``n_models``.
        validation_data : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), optional
            Scored now with ``loss``; default: each member's last validation loss of the last ``fit``
            (at its best epoch with early stopping).
        loss : str, optional
            Default: the last ``fit``'s loss, else ``"mse"``.
        """
        k = check_int("k", k, 1)
        if k > self.n_models:
            raise ValueError(f"k: expected at most n_models={self.n_models}, got {k}")
        if validation_data is None:
            hs = self.history_
            if hs is None or not all(h.val_loss for h in hs):
                raise ValueError("validation_data: the last fit recorded no validation loss; pass (X_val, Y_val)")
            scores = np.array([h.val_loss[(h.best_epoch or len(h.val_loss)) - 1] for h in hs])
        else:
            args = self._val_args(validation_data)
            sw = args[2] if len(args) == 3 else None
            scores = self.evaluate_members(args[0], args[1], sw, loss=loss or self._loss_name or "mse")
        scores = np.where(np.isfinite(scores), scores, np.inf)
        return self.select([int(i) for i in np.argsort(scores, kind="stable")[:k]])

    @staticmethod
    def _val_args(validation_data: Any) -> tuple[Any, ...]:
        if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
            raise TypeError(
                f"validation_data: expected (X_val, Y_val[, sample_weight_val]), got {describe(validation_data)}"
            )
        return tuple(validation_data)

    _loss_name: str | None = None

    def evaluate_members(self, X: Any, Y: Any, sample_weight: Any = None, loss: str = "mse") -> np.ndarray:
        """Each member's mean loss on ``(X, Y)`` (sample-weighted), shape ``(E,)`` float64."""
        loss_fn = get_loss(loss)
        M.check_loss(loss_fn)
        sizes = self._layout.sizes
        with self._backend.precision(self.dtype_name):
            data = Dataset(
                self._backend, self.dtype_name, X, Y, sizes[0], sizes[-1], loss_fn, sample_weight=sample_weight
            )
            y, sw = host_targets(data)
            z = self._forward_members(data)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(M.member_loss(loss_fn, np, None, z, y, None, sw, grad=False)[0], dtype=np.float64)

    # ----------------------------------------------------------------- training
    def fit(self, X: Any, Y: Any, **kwargs: Any) -> list[History]:
        """Train every member at once; returns one :class:`~flatnet_xp.History` per member.

        Parameters
        ----------
        X, Y, epochs, batch_size, loss, sample_weight, validation_data, patience, min_delta, callbacks, progress
            As :meth:`flatnet_xp.FlatMLP.fit`, per member: early stopping watches each member's own
            (validation) loss, keeps its best row and freezes it when its patience runs out.
            Callbacks get ``(ensemble, histories)``; returning True stops every member.
        optimizer : Optimizer or list of E Optimizers of one class, default ``Adam(lr=1e-3)``
            One list entry per member: hyperparameters that differ (learning rates and schedules,
            momenta, weight decays, betas, eps, alpha, clip_norm) become ``(E, 1)`` columns of ONE
            update over the stacked buffers. ``nesterov``/``centered`` must be shared. The state
            (one ``(E, n_params)`` buffer per slot) is kept between fits with the same optimizers.
        shuffle : bool, default True
            False: every member sees the data in order, the same batches (broadcast, not copied).
        seed : int or sequence of E ints, optional
            An int: every member sees the order ``FlatMLP.fit(seed=seed)`` would. A sequence: member
            ``i`` sees exactly the order of ``FlatMLP.fit(seed=seed[i])`` (per-member batches
            ``(E, b, L_1)`` are gathered).
        bootstrap : bool, default False
            Member ``i`` trains on its own resample of the ``n`` rows drawn with replacement
            (bagging), from its shuffle seed (``SeedSequence(seed_i, spawn_key=(2**32 + i,))``).
        checkpoint : path, optional
            Write the run's whole state (live rows, optimizer slots, best rows, histories, early
            stopping, frozen members, shuffle seeds) as ONE safetensors file, atomically, every
            ``checkpoint_every`` epochs and at the end.
        checkpoint_every : int, default 1
        resume : path, optional
            Continue the run of that checkpoint exactly (the members' numbers equal an
            uninterrupted fit); a checkpoint of another ensemble or with other settings (batch size,
            optimizers, loss, shuffle, bootstrap, early stopping, data rows) is refused, naming what
            differs. Resuming a finished run gives back what its ``fit`` returned.

        Warns
        -----
        RuntimeWarning
            Naming the members that diverged: each is put back to the start of the epoch in which it
            did and frozen; the others go on (see :attr:`diverged_`). If every member diverges,
            :class:`~flatnet_xp.DivergenceError` is raised.
        """
        with self._backend.precision(self.dtype_name):
            histories = fit_ensemble(self, X, Y, **kwargs)
        loss = kwargs.get("loss", "mse")
        self._loss_name = loss if isinstance(loss, str) else None
        self.history_ = histories
        return histories

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole ensemble to ONE safetensors file, atomically (``w`` ``(E, w_len)``, ``b``
        ``(E, b_len)``, with model files' metadata, checksum and validation)."""
        write_ensemble(path, np.asarray(to_numpy(self._flat)), self._layout, self._activations, self.dtype_name,
                       self._loss_name)  # fmt: skip

    def to_onnx(
        self, path: str | os.PathLike[str], *, dtype: Any = None, opset: int | None = None, members: bool = False
    ) -> None:
        """Write the ensemble as ONE ONNX model, atomically (``pip install 'flatnet_xp[onnx]'``).

        Input ``X`` (batch, L_1); outputs ``output`` (the members' mean, :meth:`predict`), ``std``
        (their spread, ``predict(X, return_std=True)``), for classification losses
        ``probabilities`` and ``label`` (:meth:`predict_proba`, :meth:`predict_class`), and with
        ``members`` every member's outputs ``(E, batch, L_n)``. ``dtype`` defaults to the
        ensemble's. See :mod:`flatnet_xp.export._ensemble`.

        Raises
        ------
        ValueError, TypeError
            A bad path, dtype, opset or ``members``; float64 parameters beyond float32's range
            with ``dtype="float32"``. Nothing is written then.
        """
        flat = np.asarray(to_numpy(self._flat))
        if not np.all(np.isfinite(flat)):
            raise ValueError("to_onnx: the ensemble's parameters are not all finite")
        write_ensemble_onnx(path, self._layout, self._activations, flat, members=members,
                            dtype=self.dtype_name if dtype is None else dtype, opset=opset,
                            loss=self._loss_name)  # fmt: skip

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], backend: str | ModuleType = "numpy", dtype: Any = None, device: Any = None
    ) -> FlatEnsemble:
        """Read an ensemble file onto ``backend`` (and ``dtype``, default the file's).

        Raises :class:`flatnet_xp.ModelFileError` for anything but an intact ensemble file (a single
        network's model file included).
        """
        meta, flat = read_ensemble(path)
        dtype_name = check_dtype(dtype) if dtype is not None else meta["dtype"]
        with np.errstate(over="ignore"):
            flat = flat.astype(dtype_name)
        if not np.all(np.isfinite(flat)):
            raise ValueError(f"dtype: the file's values overflow {dtype_name}")
        be = get_backend(backend, device)
        self = cls.__new__(cls)
        self._setup(be, Layout(meta["layer_sizes"]), tuple(meta["activations"]), dtype_name, flat.shape[0], device)
        self._flat = be.asarray(flat, dtype=self._dtype)
        loss = meta.get("loss")
        self._loss_name = loss if isinstance(loss, str) else None
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Architecture, backend, dtype, parameters (as NumPy), loss and histories; no modules or
        optimizer state (as a pickled :class:`~flatnet_xp.FlatMLP`)."""
        return {
            "layer_sizes": list(self._layout.sizes),
            "activations": list(self._activations),
            "backend": self._backend.name,
            "device": self._device_arg if isinstance(self._device_arg, str | int | type(None)) else None,
            "dtype": self.dtype_name,
            "params": np.array(to_numpy(self._flat)),
            "loss": self._loss_name,
            "diverged_": dict(self.diverged_),
            "history_": self.history_,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        be = get_backend(state["backend"], state["device"])
        flat = np.asarray(state["params"])
        self._setup(be, Layout(state["layer_sizes"]), tuple(state["activations"]), state["dtype"], flat.shape[0],
                    state["device"])  # fmt: skip
        self._flat = be.asarray(flat, dtype=self._dtype)
        self._loss_name = state["loss"]
        self.diverged_, self.history_ = state["diverged_"], state["history_"]

    def __repr__(self) -> str:
        return (
            f"FlatEnsemble({list(self._layout.sizes)}, n_models={self.n_models}, "
            f"activations={list(self._activations)}, backend={self.backend!r}, dtype={self.dtype_name!r})"
        )
