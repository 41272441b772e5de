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
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._compat import precision
from flatnet_xp._shim import NO_OUT
from flatnet_xp.history import DivergenceError
from flatnet_xp.schedules import checked_lr

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
    traced = getattr(opt.lr, "traced", None) is not None
    return (type(opt), repr(sorted(opt.hyperparameters().items())), opt.lr if traced else "host", opt._w_len)


def _epoch_program(spec: F.Spec, loss: Loss, opt: Optimizer, batch: int, n: int, labels: bool, weighted: bool) -> Any:
    """The jitted epoch for this configuration (compiled on first call, then cached)."""
    key = (spec, loss, _optimizer_key(opt), batch, n, labels, weighted)
    fn = _EPOCHS.get(key)
    if fn is None:
        if len(_EPOCHS) >= _MAX_PROGRAMS:
            _EPOCHS.pop(next(iter(_EPOCHS)))
        fn = _EPOCHS[key] = _build_epoch(spec, loss, _frozen_copy(opt), batch, n, labels, weighted)
    return fn


def _frozen_copy(opt: Optimizer) -> Optimizer:
    """The optimizer's hyperparameters without its state (what a cached program may keep alive)."""
    clone = object.__new__(type(opt))
    clone.__dict__.update({k: v for k, v in opt.__dict__.items() if k not in ("state", "_scratch", "_blocks")})
    clone.state, clone._scratch = {}, [NO_OUT]
    return clone


def _build_epoch(spec: F.Spec, loss: Loss, opt: Optimizer, batch: int, n: int, labels: bool, weighted: bool) -> Any:
    import jax

    xp, ops = spec.xp, spec.ops
    n_full, rem = divmod(n, batch)
    n_out = spec.layout.sizes[-1]
    traced_lr = getattr(opt.lr, "traced", None)

    def step(carry: Any, xs: Any, X: Any, Y: Any, W: Any) -> Any:
        params, state, t = carry
        idx, lr_host = xs
        x = xp.take(X, idx, axis=0)
        y = xp.take(Y, idx, axis=0)
        if labels:
            y = xp.astype(y[:, None] == xp.arange(n_out), spec.dtype)
        sw = None
        if weighted:
            w = xp.take(W, idx, axis=0)
            mean = xp.mean(w)
            sw = xp.where(mean > 0, w / xp.where(mean > 0, mean, 1.0), 0.0)[:, None]
        value, g = _loss_and_grad_traced(spec, loss, params, x, y, sw)
        lr = traced_lr(xp, t) if traced_lr is not None else lr_host
        g = opt.clip(xp, ops, g)
        new_state = dict(state)
        params = opt.update(ops, 0, params, g, new_state, NO_OUT, lr, t + 1)
        check = opt.check(ops, params, new_state)
        return (params, new_state, t + 1), (value, check)

    def epoch(params: Any, state: Any, t: Any, X: Any, Y: Any, W: Any, order: Any, lrs: Any) -> Any:
        body = functools.partial(step, X=X, Y=Y, W=W)
        carry = (params, state, t)
        losses, checks = [], []
        if n_full:
            full = xp.reshape(order[: n_full * batch], (n_full, batch))
            carry, (lv, cv) = jax.lax.scan(body, carry, (full, lrs[:n_full]))
            losses.append(lv)
            checks.append(cv)
        if rem:
            carry, (lv, cv) = body(carry, (order[n_full * batch :], lrs[n_full]))
            losses.append(lv[None])
            checks.append(cv[None])
        return carry, xp.concat(losses), xp.concat(checks)

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
        with precision(be, net.dtype):
            X = data.X.toarray() if hasattr(data.X, "toarray") else data.X
            self.X = be.asarray(X, dtype=net.dtype)  # on the device once per fit
            self.Y = xp.astype(be.asarray(data.Y), xp.int32) if data.labels else be.asarray(data.Y, dtype=net.dtype)
            self.W = None if data.sample_weight is None else be.asarray(data.sample_weight, dtype=net.dtype)
            self.program = _epoch_program(net._spec, loss, optimizer, batch, n, data.labels, self.W is not None)
        self._host_lr = getattr(optimizer.lr, "traced", None) is None

    def run(self, epoch: int, order: np.ndarray | None, bar: Any) -> np.ndarray:
        """Train one epoch in ``order`` (None: data order); returns each step's loss (host array)."""
        net, opt = self.net, self.optimizer
        be, xp = net._be, net.xp
        bar.start_epoch(epoch)
        t0 = opt.t
        if self._host_lr:
            lrs = np.array([checked_lr(opt.lr, t0 + s) for s in range(self.n_batches)])
        else:
            lrs = np.zeros(self.n_batches)
        idx = np.arange(self.data.n) if order is None else order
        with precision(be, net.dtype):
            (params, state, _), losses, checks = self.program(
                net.params,
                dict(opt.state),
                be.asarray(np.int32(t0)),
                self.X,
                self.Y,
                self.W,
                be.asarray(idx.astype(np.int32)),
                be.asarray(lrs, dtype=net.dtype),
            )
            host_losses = np.asarray(losses, dtype=np.float64)
            finite = bool(np.all(np.isfinite(host_losses))) and (
                bool(np.all(np.isfinite(np.asarray(checks))))  # else confirm: a sum of large values can overflow
                or all(bool(xp.all(xp.isfinite(a))) for a in (params, *state.values()))
            )
        if not finite:
            bad = int(np.argmin(np.isfinite(host_losses))) if not np.all(np.isfinite(host_losses)) else 0
            raise DivergenceError(
                f"non-finite loss, gradient or update at epoch {epoch + 1}, step {bad + 1}; the parameters and "
                "optimizer state are those at the start of this epoch (one compiled program): lower the learning "
                "rate or set clip_norm",
                epoch + 1,
                bad + 1,
            )
        net.params, opt.state, opt.t = params, state, t0 + self.n_batches
        if bar.enabled:
            bar.batches(self.n_batches, float(host_losses[-1]))
        return host_losses
