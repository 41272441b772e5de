"""Compiled ensemble epochs: on JAX an epoch of every member is ONE XLA program.

The same hand-written math as the eager steps (:mod:`._math`'s batched forward and backward, the
per-member losses, the optimizer's whole-buffer update with ``(E, 1)`` hyperparameter columns),
traced into one jitted ``lax.scan`` over the epoch's full batches followed by the last, smaller
batch, as :mod:`flatnet_xp.engines.compiled` does for one network. The data go to the device once
per fit; each epoch sends its batch indices (shared ``(steps, b)`` or per member ``(steps, E, b)``)
and the members' learning rates ``(steps, E, 1)`` (0 for frozen members), and reads back the
losses ``(steps, E)``. Programs are cached by configuration for the process.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flatnet_xp._data import normalized_weights
from flatnet_xp.backends import NO_OUT
from flatnet_xp.ensemble import _math as M
from flatnet_xp.optim import clip_factor

__all__ = ["CompiledEnsembleEpochs"]

_PROGRAMS: dict[Any, Any] = {}
#: Optimizer attributes that may be per-member columns (part of a program's key).
_HYPER = ("momentum", "weight_decay", "eps", "alpha", "betas")
_MAX_PROGRAMS = 32


def _plain(value: Any) -> Any:
    """Hyperparameters as hashable plain values (columns as tuples)."""
    if isinstance(value, np.ndarray):
        return tuple(value.ravel().tolist())
    if isinstance(value, tuple | list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(value)


def _build(tr: Any, batch: int, n_full: int, last: int, per_member: bool, weighted: bool) -> Any:
    import jax

    spec, xp, ops, opt, loss, clip, e = tr.spec, tr.xp, tr.ops, tr.optimizer, tr.loss, tr.clip, tr.e

    def gather(A: Any, idx: Any) -> Any:
        if not per_member:
            return xp.take(A, idx, axis=0)
        rows = xp.take(A, xp.reshape(idx, (-1,)), axis=0)
        return xp.reshape(rows, (e, int(idx.shape[-1]), *A.shape[1:]))

    def step(carry: Any, xs: Any, X: Any, Y: Any, W: Any) -> Any:
        p, bufs = carry
        idx, lr, t = xs
        x, y = gather(X, idx), gather(Y, idx)
        sw = None
        if W is not None:
            w = gather(W, idx)
            sw = normalized_weights(xp, w, xp.mean(w, axis=-1, keepdims=True))[..., None]
        ws = M.Workspace(spec, e, int(idx.shape[-1]))
        z = M.forward(spec, M.layer_views(spec, p), x, ws)
        value, ws.deltas[-1] = M.member_loss(loss, xp, ops, z, y, NO_OUT, sw)
        g = M.join(spec, M.backward(spec, M.layer_views(spec, p), x, ws, None))
        if clip is not None:
            g = g * clip_factor(xp, xp.sum(g * g, axis=-1, keepdims=True), clip)
        s = dict(bufs)
        p = opt.update(ops, 0, p, g, s, NO_OUT, lr, t + 1)
        return (p, s), value

    def epoch(p: Any, bufs: Any, t0: Any, X: Any, Y: Any, W: Any, idx_full: Any, idx_tail: Any, lrs: Any) -> Any:
        carry = (p, bufs)
        losses = []
        if n_full:
            ts = t0 + xp.arange(n_full, dtype=xp.int32)

            def body(c: Any, xs: Any) -> Any:
                return step(c, xs, X, Y, W)

            carry, lv = jax.lax.scan(body, carry, (idx_full, lrs[:n_full], ts))
            losses.append(lv)
        if last:
            carry, lv = step(carry, (idx_tail, lrs[n_full], t0 + n_full), X, Y, W)
            losses.append(lv[None])
        return carry, xp.concat(losses, axis=0)

    return jax.jit(epoch)


class CompiledEnsembleEpochs:
    """Run one epoch of every member as one compiled program; ``(order) -> losses (steps, E)``."""

    def __init__(self, tr: Any) -> None:
        self.tr = tr
        data, be, plan = tr.data, tr.be, tr.plan
        X = data.X.toarray() if hasattr(data.X, "toarray") else data.X
        with be.precision(tr.ens.dtype_name):
            self.X = be.asarray(X, dtype=tr.dtype)
            if data.labels:
                y = np.asarray(data.host_rows(data.Y, slice(None))).astype(np.int64)
                self.Y = be.asarray((y[:, None] == np.arange(data.n_outputs)).astype(tr.ens.dtype_name), dtype=tr.dtype)
            else:
                self.Y = be.asarray(data.Y, dtype=tr.dtype)
            self.W = None if data.sample_weight is None else be.asarray(data.sample_weight, dtype=tr.dtype)
        self.batch, self.n_full = plan.batch_size, plan.n_full
        self.last = plan.last_size if plan.last_size < plan.batch_size else 0
        self._programs: dict[bool, Any] = {}

    def _program(self, per_member: bool) -> Any:
        tr = self.tr
        key = (
            tr.spec, tr.loss, type(tr.optimizer), _plain(tr.opts.merged.hyperparameters()),
            _plain({n: getattr(tr.opts.merged, n, None) for n in _HYPER}),
            tr.opts.buffer_names, _plain(tr.opts.clip_norms()), tr.optimizer._w_len, tr.e, self.batch, self.n_full,
            self.last, per_member, self.W is not None,
        )  # fmt: skip
        fn = _PROGRAMS.get(key)
        if fn is None:
            if len(_PROGRAMS) >= _MAX_PROGRAMS:
                _PROGRAMS.pop(next(iter(_PROGRAMS)))
            fn = _PROGRAMS[key] = _build(tr, self.batch, self.n_full, self.last, per_member, self.W is not None)
        return fn

    def __call__(self, order: np.ndarray | None) -> np.ndarray:
        tr, plan = self.tr, self.tr.plan
        be, e = tr.be, tr.e
        n = plan.n
        if order is None:
            order = np.arange(n)
        per_member = order.ndim == 2
        cut = self.n_full * self.batch
        if per_member:
            full = order[:, :cut].reshape(e, self.n_full, self.batch).transpose(1, 0, 2)
            tail = order[:, cut:]
        else:
            full, tail = order[:cut].reshape(self.n_full, self.batch), order[cut:]
        lrs = np.empty((plan.n_batches, e, 1))
        const = tr.opts.constant_lr()
        for s in range(plan.n_batches):
            lr = const if const is not None else tr.opts.lr_at(tr.t + s)
            lrs[s] = np.broadcast_to(np.asarray(lr, dtype=np.float64), (e, 1))
        lrs *= tr.active[None, :, None]
        with be.precision(tr.ens.dtype_name):
            (p, bufs), losses = self._program(per_member)(
                tr.ens._flat, dict(tr.buffers), np.int32(tr.t), self.X, self.Y, self.W,
                be.asarray(full.astype(np.int32)), be.asarray(tail.astype(np.int32)), be.asarray(lrs, dtype=tr.dtype),
            )  # fmt: skip
            host = np.asarray(losses, dtype=np.float64)
        tr.ens._flat = p
        tr.buffers.clear()
        tr.buffers.update(bufs)
        tr.t += plan.n_batches
        return host
