"""Compiled epochs: on JAX a whole epoch is ONE XLA program, built from the same hand-written math.

The forward pass, backward pass, losses, activations and optimizer updates are the functions of
:mod:`flatnet_xp.functional`, :mod:`flatnet_xp.losses` and :mod:`flatnet_xp.optim` that every other
backend runs: written so that each operation returns its result, they run in place on NumPy, CuPy
and PyTorch and are traced here into pure functions (no ``jax.grad``: backprop is ours; autodiff is
only a test oracle). Layer ``k``'s matrix is a slice and reshape of the flat parameter vector
inside the program, where that costs nothing.

``fit`` places the data on the device once, then runs each epoch as one jitted ``lax.scan`` over
the epoch's full batches, in the SAME order the NumPy backend draws from the same seed, followed by
the last, smaller batch when the batch size does not divide the data. That last batch is run padded
to the full batch size, its padding weighted 0 (the same weighted mean over its real rows), and the
data are padded to a power-of-two number of rows: programs are compiled once per (layout,
activations, loss, optimizer and its hyperparameters, batch size, number of full batches, row
bucket, dtype, schedule) and cached for the process, so cross-validation folds that differ by a
few samples share them. Schedules with a ``traced`` method (the built-in ones) are evaluated from
the step counter inside the program; other callables are evaluated on the host once per step and
passed in as an array.

float64 runs inside JAX's scoped ``jax.enable_x64(True)`` context, float32 outside it (thread-local):
the user's global JAX configuration is never changed and never changes the programs.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._data import normalized_weights, one_hot
from flatnet_xp.backends import NO_OUT, to_numpy
from flatnet_xp.engines.plan import BatchPlan, check_epoch
from flatnet_xp.optim import clip_factor
from flatnet_xp.params import FlatParams, pad_rows, row_bucket
from flatnet_xp.schedules import checked_lr, traced_schedule

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
    from flatnet_xp.optim import Optimizer

__all__ = ["CompiledEpochs"]

#: Compiled epoch programs, by configuration (see the module doc).
_EPOCHS: dict[Any, Any] = {}
_MAX_PROGRAMS = 64
#: Datasets up to this many bytes are padded to a power-of-two number of rows (one copy on the
#: device, which host data needs anyway); larger ones keep their size (a program per size).
PAD_DATA_BYTES = 64 << 20


def _optimizer_key(opt: Optimizer, w_len: int) -> tuple[Any, ...]:
    traced = traced_schedule(opt.lr) is not None
    return (type(opt), repr(sorted(opt.hyperparameters().items())), opt.lr if traced else "host", w_len)


def _frozen_copy(opt: Optimizer, w_len: int) -> Optimizer:
    """The optimizer's hyperparameters for a network whose weights end at ``w_len``, without any
    reference to a network (what a cached program keeps; the optimizer may be updating another
    network in another thread meanwhile)."""
    clone = object.__new__(type(opt))
    clone.__dict__.update({k: v for k, v in opt.__dict__.items() if k not in ("_last", "_pending", "_tls")})
    clone._last, clone._pending, clone._w_len = None, None, w_len
    clone._tls = threading.local()
    return clone


#: Epochs with batches smaller than this carry every layer as ``W^T`` (see :class:`_Parts`).
TRANSPOSED_BELOW_BATCH = 16


class _Parts:
    """The flat buffer cut into its layers for the length of one compiled epoch.

    The epoch slices the flat parameters (and each flat optimizer-state buffer) once into one
    matrix per layer and ``b_k``, runs every step on those, and concatenates them back into flat
    buffers at its end: the same values, the same math (the optimizer's update is applied part by
    part with each part's offset in the flat buffer, which is how the NumPy backend applies it block
    by block). Orientation, measured on XLA's CPU backend: with batches of a few rows (matrix-vector
    products) the layers are carried as ``W_k^T`` of shape ``(L_in, L_out)``, which ran the seed
    network about twice as fast as ``W_k`` (0.4 against 0.8-1.0 us per step); with larger batches as
    ``W_k`` itself, 5-8 % faster on [784, 256, 256, 10] at batch 128 (0.56-0.58 against 0.60-0.61 ms
    per step) and the same on [1024, 4096, 4096, 1024]. Mixing orientations was slowest.
    """

    def __init__(self, spec: F.Spec, batch: int) -> None:
        lay = spec.layout
        self.spec, self.xp, self.layout = spec, spec.xp, lay
        self.offsets = [lay.w_offsets[k] for k in range(lay.n_layers)]
        self.offsets += [lay.w_len + lay.b_offsets[k] for k in range(lay.n_layers)]
        self.transposed = batch < TRANSPOSED_BELOW_BATCH

    def _orient(self, k: int, m: Any) -> Any:
        """``W_k`` to its carried form and back (the same operation: a transpose, or nothing)."""
        return self.xp.matrix_transpose(m) if self.transposed else m

    def split(self, flat: Any) -> list[Any]:
        """``[W_0 or W_0^T, ..., b_0, ..., b_{L-1}]`` of a flat ``[w, b]`` buffer."""
        xp, lay = self.xp, self.layout
        W = [self._orient(k, xp.reshape(flat[lay.w_slice(k)], lay.shapes[k])) for k in range(lay.n_layers)]
        w_len = lay.w_len
        b = [flat[w_len + lay.b_offsets[k] : w_len + lay.b_offsets[k + 1]] for k in range(lay.n_layers)]
        return W + b

    def join(self, parts: list[Any]) -> Any:
        """The flat buffer of :meth:`split`'s parts."""
        n = self.layout.n_layers
        return F.join(self.spec, [self._orient(k, m) for k, m in enumerate(parts[:n])] + parts[n:])

    def views(self, parts: list[Any]) -> F.Views:
        n, xp = self.layout.n_layers, self.xp
        W = [self._orient(k, m) for k, m in enumerate(parts[:n])]
        return F.Views(W, [xp.matrix_transpose(m) for m in W], parts[n:])

    def transpose_weights(self, grads: list[Any]) -> list[Any]:
        """Backward's ``[dW_k (out, in)] + [db_k]`` in the parts' orientation."""
        n = self.layout.n_layers
        return [self._orient(k, g) for k, g in enumerate(grads[:n])] + grads[n:]


def _epoch_program(key: tuple[Any, ...], build: Any) -> Any:
    """The jitted epoch for ``key`` (compiled on first call, then cached)."""
    fn = _EPOCHS.get(key)
    if fn is None:
        if len(_EPOCHS) >= _MAX_PROGRAMS:
            _EPOCHS.pop(next(iter(_EPOCHS)))
        fn = _EPOCHS[key] = build()
    return fn


def _build_epoch(
    spec: F.Spec, loss: Loss, opt: Optimizer, batch: int, n_full: int, tail: bool, labels: bool, weighted: bool,
    shuffled: bool,
) -> Any:  # fmt: skip
    import jax

    xp, ops = spec.xp, spec.ops
    n_out = spec.layout.sizes[-1]
    classes = xp.arange(n_out, dtype=xp.int32)
    traced_lr = traced_schedule(opt.lr)
    cut = _Parts(spec, batch)

    def update(params: list[Any], grads: list[Any], state: dict[str, list[Any]], lr: Any, t: Any) -> Any:
        """The optimizer's update, part by part (clipping by the norm of the whole gradient)."""
        if opt.clip_norm is not None:
            factor = clip_factor(xp, sum(xp.sum(g * g) for g in grads), opt.clip_norm)
            grads = [g * factor for g in grads]
        new_params, new_state = [], {name: list(bufs) for name, bufs in state.items()}
        for i, (p, g, lo) in enumerate(zip(params, grads, cut.offsets, strict=True)):
            s = {name: xp.reshape(bufs[i], (-1,)) for name, bufs in state.items()}
            flat_p = opt.update(ops, lo, xp.reshape(p, (-1,)), xp.reshape(g, (-1,)), s, NO_OUT, lr, t)
            new_params.append(xp.reshape(flat_p, p.shape))
            for name in state:
                new_state[name][i] = xp.reshape(s[name], p.shape)
        return new_params, new_state

    def step(carry: Any, t: Any, x: Any, y: Any, w: Any, lr_host: Any) -> Any:
        """One update; ``t`` is the number of updates made before it (an input, not a carried
        counter: an integer in the loop's carry made XLA's CPU loop 2.7x slower, measured)."""
        params, state = carry
        if labels:
            y = one_hot(xp, y, classes, spec.dtype)
        sw = None if w is None else normalized_weights(xp, w, xp.mean(w))[:, None]
        ws = F.Workspace(spec, int(x.shape[0]))
        value, grads = F.loss_and_grad(spec, cut.views(params), x, y, sw, loss, ws, None)
        lr = traced_lr(xp, xp.astype(t, spec.dtype)) if traced_lr is not None else lr_host
        params, state = update(params, cut.transpose_weights(grads), state, lr, t + 1)
        return (params, state), value

    def epoch(params: Any, state: Any, t0: Any, X: Any, Y: Any, W: Any, order: Any, lrs: Any, n: Any) -> Any:
        carry = (cut.split(params), {name: cut.split(buf) for name, buf in state.items()})
        losses = []

        def take(A: Any, where: Any) -> Any:  # rows by index; the data stay where they are, never copied
            return None if A is None else xp.take(A, where, axis=0, mode="clip")

        def rows_of(lo: Any) -> Any:
            where = lo + xp.arange(batch, dtype=xp.int32)
            return where if order is None else xp.take(order, where, axis=0, mode="clip")

        if tail:
            # The last batch is padded to a full one (its padding rows weigh 0) and rides in the same
            # scan as the others: every batch is then gathered and weighted, and the step is compiled
            # once (a separate tail step cost a third of the compile time, measured).
            def body(c: Any, xs: Any) -> Any:
                lo, k, lr = xs
                where = rows_of(lo)
                real = xp.astype(lo + xp.arange(batch, dtype=xp.int32) < n, spec.dtype)
                w = real if W is None else take(W, where) * real
                return step(c, t0 + k, take(X, where), take(Y, where), w, lr)

            n_steps = n_full + 1
            starts = xp.arange(n_steps, dtype=xp.int32) * batch
            carry, lv = jax.lax.scan(body, carry, (starts, xp.arange(n_steps, dtype=xp.int32), lrs))
            losses.append(lv)
        else:
            if shuffled:  # rows of the epoch's order, gathered by index
                starts = xp.reshape(order[: n_full * batch], (n_full, batch))

                def body(c: Any, xs: Any) -> Any:
                    where, k, lr = xs
                    return step(c, t0 + k, take(X, where), take(Y, where), take(W, where), lr)

            else:  # data order: consecutive slices
                starts = xp.arange(n_full, dtype=xp.int32) * batch

                def slice_rows(A: Any, lo: Any) -> Any:
                    return None if A is None else jax.lax.dynamic_slice_in_dim(A, lo, batch, axis=0)

                def body(c: Any, xs: Any) -> Any:
                    lo, k, lr = xs
                    return step(c, t0 + k, slice_rows(X, lo), slice_rows(Y, lo), slice_rows(W, lo), lr)

            carry, lv = jax.lax.scan(body, carry, (starts, xp.arange(n_full, dtype=xp.int32), lrs))
            losses.append(lv)
        params = cut.join(carry[0])
        state = {name: cut.join(parts) for name, parts in carry[1].items()}
        # A NaN or infinity, once in the parameters or state, stays there: one check per epoch.
        finite = xp.all(xp.isfinite(params))
        for buf in state.values():
            finite = finite & xp.all(xp.isfinite(buf))
        # The flag rides at the end of the losses: the host reads ONE array per epoch.
        flag = xp.reshape(xp.astype(finite, losses[0].dtype), (1,))
        return (params, state), xp.concat([*losses, flag])

    return jax.jit(epoch)


def _padded(be: Any, arr: Any, rows: int, dtype: Any = None) -> Any:
    """``arr`` on the device in ``dtype`` with ``rows`` rows (zeros appended).

    Host data are padded on the host and moved once (nothing compiled); device data by one jitted
    program per shape, which JAX caches: eager ``concat`` and ``zeros`` cost a dispatch each on
    every ``fit`` call (a third of a one-epoch call of the seed network, measured).
    """
    if not be.owns(arr):
        return be.asarray(pad_rows(np.asarray(to_numpy(arr), dtype=None if dtype is None else np.dtype(dtype)), rows))
    if dtype is not None and arr.dtype != dtype:
        arr = be.xp.astype(arr, dtype)
    return arr if rows == int(arr.shape[0]) else _pad_rows()(arr, rows)


@functools.cache
def _pad_rows() -> Any:
    import jax

    def pad(arr: Any, rows: int) -> Any:
        widths = [(0, rows - arr.shape[0])] + [(0, 0)] * (arr.ndim - 1)
        return jax.numpy.pad(arr, widths)

    return jax.jit(pad, static_argnums=1)


class CompiledEpochs:
    """Epochs of ``fit`` on JAX, each ONE compiled program (same interface as the eager engine).

    A divergence (a non-finite loss or update anywhere in the epoch) keeps the parameters and
    optimizer state of the epoch's start (they are immutable values, so this costs nothing).
    """

    def __init__(self, params: FlatParams, data: Dataset, loss: Loss, optimizer: Optimizer, plan: BatchPlan) -> None:
        self.params, self.data, self.loss, self.optimizer, self.plan = params, data, loss, optimizer, plan
        be, n = params.backend, data.n
        X = data.X.toarray() if hasattr(data.X, "toarray") else data.X
        width = int(np.prod(X.shape[1:])) + (1 if data.labels else data.n_outputs) + (data.sample_weight is not None)
        bucket = row_bucket(n)
        # Host data are padded to a row bucket (a program serves every n of the bucket: cross-validation
        # folds); data already on the device are used as they are (a program per n, no copy per fit).
        on_device = data._x_native and (data.labels or data._y_native)
        fits = bucket * width * np.dtype(params.dtype_name).itemsize <= PAD_DATA_BYTES
        self.rows = bucket if fits and not on_device else n
        with be.precision(params.dtype_name):  # on the device once per fit
            if self.rows == n and data._x_native:
                self.X = X
            else:
                self.X = _padded(be, X, self.rows, params.dtype)
            if data.labels:
                self.Y = _padded(be, data.Y, self.rows, be.xp.int32)
            elif self.rows == n and data._y_native:
                self.Y = data.Y
            else:
                self.Y = _padded(be, data.Y, self.rows, params.dtype)
            self.W = None if data.sample_weight is None else _padded(be, data.sample_weight, self.rows, params.dtype)
            self.n = np.int32(n)  # a host scalar: the jitted call moves it (device_put here costs 0.1 ms)
        self._host_lr = traced_schedule(optimizer.lr) is None
        self._state = optimizer.state_of(params)
        tail = plan.last_size < plan.batch_size
        self._key = (
            params.spec, loss, _optimizer_key(optimizer, params.layout.w_len), plan.batch_size, plan.n_full, tail,
            data.labels, self.W is not None, self.rows,
        )  # fmt: skip
        self._orders: dict[int, Any] = {}

    def _program(self, shuffled: bool) -> Any:
        plan, data = self.plan, self.data
        tail = plan.last_size < plan.batch_size
        return _epoch_program(
            (*self._key, shuffled),
            lambda: _build_epoch(
                self.params.spec, self.loss, _frozen_copy(self.optimizer, self.params.layout.w_len), plan.batch_size,
                plan.n_full, tail,
                data.labels, self.W is not None, shuffled,
            ),
        )  # fmt: skip

    def run(self, epoch: int, order: np.ndarray | None, bar: Any) -> np.ndarray:
        """Train one epoch in ``order`` (None: data order); returns each step's loss (host array)."""
        p, opt, plan = self.params, self.optimizer, self.plan
        be = p.backend
        bar.start_epoch(epoch)
        state = self._state = opt.state_of(p)
        t0 = state.t
        lrs = None
        if self._host_lr:  # a schedule that is not traceable: its values, checked, as one array
            lrs = be.asarray(np.array([checked_lr(opt.lr, t0 + s) for s in range(plan.n_batches)]), dtype=p.dtype)
        dev_order = None
        if order is not None:
            host = np.zeros(self.rows, dtype=np.int32)
            host[: plan.n] = order
            dev_order = be.asarray(host)
        with be.precision(p.dtype_name):
            (flat, buffers), losses_and_flag = self._program(order is not None)(
                p.flat, dict(state.buffers), np.int32(t0), self.X, self.Y, self.W, dev_order, lrs, self.n
            )
            host_out = np.asarray(losses_and_flag, dtype=np.float64)
        host_losses = host_out[:-1]
        check_epoch(epoch, host_losses, host_out[-1] == 1.0)
        p.assign(flat)
        state.buffers, state.t = buffers, t0 + plan.n_batches
        if bar.enabled:
            bar.batches(plan.n_batches, float(host_losses[-1]))
        return host_losses
