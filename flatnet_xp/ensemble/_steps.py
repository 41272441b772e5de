"""One step of every member, on the stacked buffers: batches, the batched math, the merged update,
per-member checks and validation (what :mod:`._fit`'s epochs and :mod:`._compiled` drive)."""

from __future__ import annotations

from typing import Any

import numpy as np

from flatnet_xp._data import Dataset, normalized_weights
from flatnet_xp.backends import to_numpy
from flatnet_xp.engines.plan import BatchPlan
from flatnet_xp.ensemble import _math as M
from flatnet_xp.ensemble._optim import MemberOptimizers, placed, to_backend
from flatnet_xp.losses import Loss
from flatnet_xp.optim import clip_factor

__all__ = ["Trainer", "host_targets"]

#: Floats of one validation chunk's activations ``(E, rows, width)``.
_EVAL_FLOATS = 1 << 21


def host_targets(data: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Validation targets ``(n, L_out)`` float64 (labels one-hot) and weights ``(n, 1)`` over the global mean."""
    y = np.asarray(data.host_rows(data.Y, slice(None)), dtype=np.float64)
    if data.labels:
        y = (y.astype(np.int64)[:, None] == np.arange(data.n_outputs)).astype(np.float64)
    sw = None
    if data.sample_weight is not None:
        w = np.asarray(data.sample_weight, dtype=np.float64)
        sw = normalized_weights(np, w, w.mean())[:, None]
    return y, sw


class Trainer:
    """The members' training state for one ``fit``: buffers, workspaces, the merged optimizer, the frozen mask."""

    def __init__(self, ens: Any, data: Dataset, val: Dataset | None, loss: Loss, opts: MemberOptimizers,
                 plan: BatchPlan) -> None:  # fmt: skip
        self.ens, self.data, self.val, self.loss, self.opts, self.plan = ens, data, val, loss, opts, plan
        be = ens._backend
        self.be, self.xp, self.ops, self.spec, self.e = be, be.xp, be.ops, ens._spec, ens.n_models
        self.dtype = ens._dtype
        self.optimizer = placed(opts.merged, be, self.dtype)
        self.optimizer._w_len = ens.layout.w_len
        lr = opts.constant_lr()
        self.lr_const = None if lr is None else to_backend(lr, be, self.dtype)
        clip = opts.clip_norms()
        self.clip = None if clip is None else to_backend(clip, be, self.dtype)
        n = ens.layout.n_params
        xp, dev = self.xp, be.device
        state = ens._opt_state
        if state is None or state[0] != opts.key():
            buffers = {name: xp.zeros((self.e, n), dtype=self.dtype, device=dev) for name in opts.buffer_names}
            state = ens._opt_state = (opts.key(), 0, buffers)
        self.t, self.buffers = state[1], state[2]
        self.active = np.ones(self.e, dtype=bool)
        if be.mutable:
            self.grad = xp.zeros((self.e, n), dtype=self.dtype, device=dev)
            self.grad_views: M.Views | None = M.layer_views(self.spec, self.grad)
            self.tmp = xp.empty((self.e, n), dtype=self.dtype, device=dev)
            self.ws = {m: M.Workspace(self.spec, self.e, m) for m in {plan.batch_size, plan.last_size}}
        else:
            self.grad_views, self.tmp = None, None

    # ------------------------------------------------------------------ one step
    def _lr(self) -> Any:
        lr = self.lr_const if self.lr_const is not None else to_backend(self.opts.lr_at(self.t), self.be, self.dtype)
        if not self.active.all():
            mask = self.be.asarray(self.active[:, None].astype(np.float64), dtype=self.dtype)
            lr = lr * mask
        return lr

    def step(self, x: Any, y: Any, sw: Any) -> Any:
        """One update of every member; returns the members' batch losses ``(E,)`` (before the update)."""
        ens, spec, ops, xp = self.ens, self.spec, self.ops, self.xp
        p = ens._flat
        views = ens._views()
        rows = int(x.shape[-2])
        ws = self.ws[rows] if self.be.mutable else M.Workspace(spec, self.e, rows)
        z = M.forward(spec, views, x, ws)
        value, ws.deltas[-1] = M.member_loss(self.loss, xp, ops, z, y, ws.deltas[-1], sw)
        parts = M.backward(spec, views, x, ws, self.grad_views)
        g = self.grad if self.grad_views is not None else M.join(spec, parts)
        if self.clip is not None:
            g = ops.imul(g, clip_factor(xp, xp.sum(g * g, axis=-1, keepdims=True), self.clip))
        lr = self._lr()
        self.t += 1
        new = self.optimizer.update(ops, 0, p, g, self.buffers, self.tmp, lr, self.t)
        ens._flat = self.be.assign(p, new)
        return value

    # ------------------------------------------------------------------ batches
    def batch(self, rows: Any) -> tuple[Any, Any, Any]:
        """Backend batch of ``rows``: a slice or 1-D indices (shared), or ``(E, b)`` indices (per member)."""
        data = self.data
        if isinstance(rows, slice) or rows.ndim == 1:
            return data.batch(rows)
        e, b = rows.shape
        x, y, _ = data.batch(rows.reshape(-1))
        xp = self.xp
        x = xp.reshape(x, (e, b, int(x.shape[-1])))
        y = xp.reshape(y, (e, b, int(y.shape[-1])))
        sw = None
        if data.sample_weight is not None:
            w = np.asarray(data.sample_weight)[rows]
            w = normalized_weights(np, w, w.mean(axis=1, keepdims=True))
            sw = self.be.asarray(w[:, :, None], dtype=self.dtype)
        return x, y, sw

    # ------------------------------------------------------------------ checks
    def finite_rows(self) -> np.ndarray:
        xp = self.xp
        ok = xp.all(xp.isfinite(self.ens._flat), axis=1)
        for buf in self.buffers.values():
            ok = ok & xp.all(xp.isfinite(buf), axis=1)
        return np.asarray(to_numpy(ok), dtype=bool)

    def copy_rows(self, target: Any, source: Any, rows: np.ndarray) -> Any:
        """``target`` with ``source``'s rows where ``rows`` (bool ``(E,)``); written in place where possible."""
        mask = self.be.asarray(rows[:, None])
        return self.be.assign(target, self.xp.where(mask, source, target))

    def snapshot(self, into: tuple[Any, dict[str, Any]] | None = None) -> tuple[Any, dict[str, Any]]:
        """Copies of the parameters and optimizer state (written into ``into``'s buffers when given)."""
        be = self.be
        flat = be.copy(self.ens._flat, None if into is None else into[0])
        return flat, {k: be.copy(v, None if into is None else into[1].get(k)) for k, v in self.buffers.items()}

    def restore_rows(self, snap: tuple[Any, dict[str, Any]], rows: np.ndarray) -> None:
        self.ens._flat = self.copy_rows(self.ens._flat, snap[0], rows)
        for k in list(self.buffers):
            self.buffers[k] = self.copy_rows(self.buffers[k], snap[1][k], rows)

    # ------------------------------------------------------------------ validation
    def validate(self, yv: np.ndarray, swv: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Per-member validation loss, accuracy (classification) and score (accuracy or R^2)."""
        assert self.val is not None
        z = self.ens._forward_members(self.val, chunk_floats=_EVAL_FLOATS)  # (E, n, L) float64
        loss = self.loss
        value, _ = M.member_loss(loss, np, None, z, yv, None, swv, grad=False)
        w = np.ones((yv.shape[0], 1)) if swv is None else swv
        n = yv.shape[0]
        if loss.classification:
            if loss.targets == "binary" or z.shape[-1] == 1:
                hits = ((z > 0) == (yv > 0.5)).astype(np.float64)
                acc = (hits * w).sum(axis=(1, 2)) / (n * z.shape[-1])
            else:
                hits = (np.argmax(z, axis=-1) == np.argmax(yv, axis=-1)).astype(np.float64)
                acc = (hits * w[:, 0]).sum(axis=1) / n
            return value, acc, acc
        pred = np.exp(z) if loss.name == "poisson" else z
        res = (w * (pred - yv) ** 2).sum(axis=1)
        ss = self.val.total_sum_of_squares()
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss > 0, 1.0 - res / np.where(ss > 0, ss, 1.0), np.where(res == 0, 1.0, 0.0))
        return value, None, r2.mean(axis=1)
