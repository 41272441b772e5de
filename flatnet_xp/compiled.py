"""Compiled execution on JAX: a whole epoch is ONE XLA program, built from the same hand-written math.

The forward pass, backward pass, losses, activations and optimizer updates are the functions of
:mod:`flatnet_xp.functional`, :mod:`flatnet_xp.losses` and :mod:`flatnet_xp.optim` that every other
backend runs: written so that each operation returns its result, they run in place on NumPy, CuPy
and PyTorch and are traced here into pure functions (no ``jax.grad``: backprop is ours; autodiff is
only a test oracle). Layer ``k``'s matrix is a slice and reshape of the flat parameter vector
inside the program, where that costs nothing.

``fit`` places the data on the device once, then runs each epoch as one jitted ``lax.scan`` over
the epoch's batches, in the SAME order the NumPy backend draws from the same seed, followed by the
last, smaller batch when the batch size does not divide the data; it returns every step's loss as
one array. Programs are compiled once per (layout, activations, loss, optimizer and its
hyperparameters, batch size, number of samples, dtype, schedule) and cached for the process.
Schedules with a ``traced`` method (the built-in ones) are evaluated from the step counter inside the
program; other callables are evaluated on the host once per step and passed in as an array.

float64 runs inside JAX's scoped ``jax.enable_x64(True)`` context (thread-local): the user's global
JAX configuration is never changed.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._compat import precision
from flatnet_xp._shim import NO_OUT
from flatnet_xp.history import DivergenceError
from flatnet_xp.schedules import checked_lr, traced_schedule

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
    from flatnet_xp.network import FlatMLP
    from flatnet_xp.optim import Optimizer

__all__ = ["CompiledEpochs", "forward", "loss_and_grad"]

#: Compiled epoch programs, by configuration (see the module doc).
_EPOCHS: dict[Any, Any] = {}
_MAX_PROGRAMS = 64


@functools.lru_cache(maxsize=_MAX_PROGRAMS)
def _forward_fn(spec: F.Spec) -> Any:
    import jax

    def fwd(params: Any, x: Any) -> Any:
        return F.forward(spec, F.layer_views(spec, params), x, F.Workspace(spec, int(x.shape[0])))

    return jax.jit(fwd)


def forward(net: FlatMLP, x: Any) -> Any:
    """Outputs of the last layer for a device batch ``x`` (jitted, compiled once per batch shape)."""
    with precision(net._be, net.dtype):
        return _forward_fn(net._spec)(net.params, x)


def _loss_and_grad_traced(spec: F.Spec, loss: Loss, params: Any, x: Any, y: Any, sw: Any) -> tuple[Any, Any]:
    ws = F.Workspace(spec, int(x.shape[0]))
    value, parts = F.loss_and_grad(spec, F.layer_views(spec, params), x, y, sw, loss, ws, None)
    return value, F.flat_gradient(spec, parts)


@functools.lru_cache(maxsize=_MAX_PROGRAMS)
def _loss_and_grad_fn(spec: F.Spec, loss: Loss) -> Any:
    import jax

    return jax.jit(functools.partial(_loss_and_grad_traced, spec, loss))


def loss_and_grad(net: FlatMLP, x: Any, y: Any, sw: Any, loss: Loss) -> tuple[Any, Any]:
    """Loss (0-d) and flat gradient of a device batch (jitted)."""
    with precision(net._be, net.dtype):
        return _loss_and_grad_fn(net._spec, loss)(net.params, x, y, sw)


def _optimizer_key(opt: Optimizer) -> tuple[Any, ...]:
    traced = traced_schedule(opt.lr) is not None
    return (type(opt), repr(sorted(opt.hyperparameters().items())), opt.lr if traced else "host", opt._w_len)


def _epoch_program(
    spec: F.Spec, loss: Loss, opt: Optimizer, batch: int, n: int, labels: bool, weighted: bool, shuffled: bool
) -> Any:
    """The jitted epoch for this configuration (compiled on first call, then cached)."""
    key = (spec, loss, _optimizer_key(opt), batch, n, labels, weighted, shuffled)
    fn = _EPOCHS.get(key)
    if fn is None:
        if len(_EPOCHS) >= _MAX_PROGRAMS:
            _EPOCHS.pop(next(iter(_EPOCHS)))
        fn = _EPOCHS[key] = _build_epoch(spec, loss, _frozen_copy(opt), batch, n, labels, weighted, shuffled)
    return fn


def _frozen_copy(opt: Optimizer) -> Optimizer:
    """The optimizer's hyperparameters without its state (what a cached program may keep alive)."""
    clone = object.__new__(type(opt))
    clone.__dict__.update({k: v for k, v in opt.__dict__.items() if k not in ("state", "_scratch", "_blocks")})
    clone.state, clone._scratch = {}, [NO_OUT]
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


def _build_epoch(
    spec: F.Spec, loss: Loss, opt: Optimizer, batch: int, n: int, labels: bool, weighted: bool, shuffled: bool
) -> Any:
    import jax

    xp, ops = spec.xp, spec.ops
    n_full, rem = divmod(n, batch)
    n_out = spec.layout.sizes[-1]
    traced_lr = traced_schedule(opt.lr)
    cut = _Parts(spec, batch)

    def update(params: list[Any], grads: list[Any], state: dict[str, list[Any]], lr: Any, t: Any) -> Any:
        """The optimizer's update, part by part (clipping by the norm of the whole gradient)."""
        if opt.clip_norm is not None:
            norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
            factor = xp.clip(opt.clip_norm / (norm + 1e-6), max=1.0)
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
            y = xp.astype(y[:, None] == xp.arange(n_out), spec.dtype)
        sw = None
        if weighted:
            mean = xp.mean(w)
            sw = xp.where(mean > 0, w / xp.where(mean > 0, mean, 1.0), 0.0)[:, None]
        ws = F.Workspace(spec, int(x.shape[0]))
        value, grads = F.loss_and_grad(spec, cut.views(params), x, y, sw, loss, ws, None)
        lr = traced_lr(xp, xp.astype(t, spec.dtype)) if traced_lr is not None else lr_host
        params, state = update(params, cut.transpose_weights(grads), state, lr, t + 1)
        return (params, state), value

    def rows(A: Any, lo: int, hi: int) -> Any:
        return None if A is None else A[lo:hi]

    def epoch(params: Any, state: Any, t0: Any, X: Any, Y: Any, W: Any, order: Any, lrs: Any) -> Any:
        carry = (cut.split(params), {name: cut.split(buf) for name, buf in state.items()})
        losses = []
        # The data stay where they are (loop invariants, never copied); each step takes its batch.
        if shuffled:  # rows of the epoch's order, gathered by index

            def take(A: Any, where: Any) -> Any:
                return None if A is None else xp.take(A, where, axis=0, mode="clip")  # no out-of-bounds fill

            starts = xp.reshape(order[: n_full * batch], (n_full, batch))
            last_rows: Any = order[n_full * batch :]
        else:  # data order: consecutive slices

            def take(A: Any, where: Any) -> Any:
                return None if A is None else jax.lax.dynamic_slice_in_dim(A, where, batch, axis=0)

            starts = xp.arange(n_full, dtype=xp.int32) * batch
            last_rows = xp.arange(n_full * batch, n, dtype=xp.int32)

        def body(c: Any, xs: Any) -> Any:
            where, k, lr = xs
            return step(c, t0 + k, take(X, where), take(Y, where), take(W, where), lr)

        def tail(c: Any) -> Any:
            w = None if W is None else xp.take(W, last_rows, axis=0)
            lr = None if lrs is None else lrs[n_full]
            return step(c, t0 + n_full, xp.take(X, last_rows, axis=0), xp.take(Y, last_rows, axis=0), w, lr)

        full = (starts, xp.arange(n_full, dtype=xp.int32), rows(lrs, 0, n_full))
        if n_full:
            carry, lv = jax.lax.scan(body, carry, full)
            losses.append(lv)
        if rem:
            carry, lv = tail(carry)
            losses.append(lv[None])
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


class CompiledEpochs:
    """Epochs of ``fit`` on JAX, each ONE compiled program (same interface as the eager loop).

    A divergence (a non-finite loss or update anywhere in the epoch) keeps the parameters and
    optimizer state of the epoch's start (they are immutable values, so this costs nothing).
    """

    def __init__(self, net: FlatMLP, data: Dataset, loss: Loss, optimizer: Optimizer, batch_size: int) -> None:
        self.net, self.data, self.loss, self.optimizer = net, data, loss, optimizer
        n = data.n
        self.batch_size = batch = min(batch_size, n)
        self.n_batches = -(-n // batch)
        self.batch_sizes = np.minimum(batch, n - np.arange(self.n_batches) * batch).astype(np.float64)
        be = net._be
        xp = be.xp
        with precision(be, net.dtype):  # on the device once per fit (as they are when already there)
            X = data.X.toarray() if hasattr(data.X, "toarray") else data.X
            self.X = X if data._x_native else be.asarray(X, dtype=net.dtype)
            if data.labels:
                self.Y = xp.astype(be.asarray(data.Y), xp.int32)
            else:
                self.Y = data.Y if data._y_native else be.asarray(data.Y, dtype=net.dtype)
            self.W = None if data.sample_weight is None else be.asarray(data.sample_weight, dtype=net.dtype)
        self._host_lr = traced_schedule(optimizer.lr) is None

    def _program(self, shuffled: bool) -> Any:
        net, data = self.net, self.data
        return _epoch_program(
            net._spec, self.loss, self.optimizer, self.batch_size, data.n, data.labels, self.W is not None, shuffled
        )

    def run(self, epoch: int, order: np.ndarray | None, bar: Any) -> np.ndarray:
        """Train one epoch in ``order`` (None: data order); returns each step's loss (host array)."""
        net, opt = self.net, self.optimizer
        be = net._be
        bar.start_epoch(epoch)
        t0 = opt.t
        lrs = None
        if self._host_lr:  # a schedule that is not traceable: its values, checked, as one array
            lrs = be.asarray(np.array([checked_lr(opt.lr, t0 + s) for s in range(self.n_batches)]), dtype=net.dtype)
        with precision(be, net.dtype):
            (params, state), losses_and_flag = self._program(order is not None)(
                net.params,
                dict(opt.state),
                np.int32(t0),
                self.X,
                self.Y,
                self.W,
                None if order is None else be.asarray(order.astype(np.int32)),
                lrs,
            )
            host = np.asarray(losses_and_flag, dtype=np.float64)
        host_losses, finite = host[:-1], host[-1] == 1.0
        # A finite sum means finite losses; only a sum that overflowed needs the element-wise test.
        if not (finite and (math.isfinite(host_losses.sum()) or np.all(np.isfinite(host_losses)))):
            raise DivergenceError.epoch_restored(epoch, host_losses)
        net.params, opt.state, opt.t = params, state, t0 + self.n_batches
        if bar.enabled:
            bar.batches(self.n_batches, float(host_losses[-1]))
        return host_losses
