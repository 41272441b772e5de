"""One epoch of ``fit`` on a mutable backend (NumPy, CuPy, PyTorch, array-api-strict), step by step.

The compiled counterpart for JAX is :mod:`flatnet_xp.compiled`; both give :func:`flatnet_xp.training.fit`
the same interface (``n_batches``, ``batch_sizes``, ``run(epoch, order, bar)`` returning each step's
loss).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._compat import to_numpy
from flatnet_xp.distributed import RemoteRankError
from flatnet_xp.history import DivergenceError

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
    from flatnet_xp.network import FlatMLP
    from flatnet_xp.optim import Optimizer

__all__ = ["EagerEpochs"]


class EagerEpochs:
    """The steps of one epoch on a mutable backend: gather a batch, loss and gradient, (all-reduce,)
    update.

    Divergence: an update only subtracts from and scales the parameters and the optimizer state, so
    a NaN or infinity, once there, stays until the epoch ends; the parameters and state are
    therefore checked once per epoch (no per-step cost), each step's loss as it is recorded. On the
    host (NumPy, PyTorch CPU, array-api-strict) the loss is read every step; a non-finite loss, or
    non-finite parameters at the epoch's end, restore the epoch's start from one flat snapshot and
    replay the epoch step by step, checking everything, up to the first failing step, so the network
    ends exactly where it was before that step. On a GPU the losses stay on the device and are read
    once per epoch (no host synchronisation per step); a divergence restores the epoch's start.

    Host-device transfers per step on a GPU: none when the data are already on the device (the
    epoch's shuffled order is uploaded once per epoch and sliced there); data given as host arrays
    are uploaded batch by batch (one copy per step, by design: the dataset is never copied whole),
    and so are sample weights (normalised per batch on the host). Data-parallel steps add the
    flag reads of :mod:`flatnet_xp.distributed` (every 32 steps on GPUs).
    """

    def __init__(self, net: FlatMLP, data: Dataset, loss: Loss, optimizer: Optimizer, batch_size: int, dist: Any):
        self.net, self.data, self.loss, self.optimizer, self.dist = net, data, loss, optimizer, dist
        self.batch_size = batch_size
        n = data.n
        self.n_batches = -(-n // batch_size)
        self.batch_sizes = np.minimum(batch_size, n - np.arange(self.n_batches) * batch_size).astype(np.float64)
        be, xp = net._be, net.xp
        self.lazy = be.is_gpu
        net.grads  # noqa: B018 - allocates the gradient buffer and its views
        self._grad_views = net._grad_views
        self._ws = {m: F.Workspace(net._spec, m) for m in {min(batch_size, n), n - (self.n_batches - 1) * batch_size}}
        self._snapshot: dict[str, Any] | None = None
        if self.lazy:
            self.dev_losses = xp.zeros(self.n_batches, dtype=xp.float64, device=be.device)
        self.host_losses = np.zeros(self.n_batches)
        # On a GPU with the data already there, an epoch's order goes to the device once, not per step.
        self._device_order = (
            self.lazy and data._x_native and (data.labels or data._y_native) and data.sample_weight is None
        )

    def _step(self, step: int, order: np.ndarray | None) -> Any:
        """One step; returns the (averaged) batch loss as a 0-d array."""
        net, bs = self.net, self.batch_size
        lo = step * bs
        hi = min(lo + bs, self.data.n)
        x, y, sw = self.data.batch(slice(lo, hi) if order is None else order[lo:hi])
        value, _ = F.loss_and_grad(net._spec, net._views, x, y, sw, self.loss, self._ws[hi - lo], self._grad_views)
        if self.dist is not None:
            value = self.dist.allreduce_step(net, value)
        self.optimizer.step(net)
        return value

    def _take_snapshot(self) -> None:
        ops, opt = self.net._be.ops, self.optimizer
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = {"params": ops.copy(self.net.params)}
            snap.update({f"opt.{k}": ops.copy(v) for k, v in opt.state.items()})
        else:
            ops.copy(self.net.params, snap["params"])
            for k, v in opt.state.items():
                ops.copy(v, snap[f"opt.{k}"])
        snap["t"] = opt.t

    def _restore_snapshot(self) -> None:
        assert self._snapshot is not None
        ops, opt, snap = self.net._be.ops, self.optimizer, self._snapshot
        ops.copy(snap["params"], self.net.params)
        for k, v in opt.state.items():
            ops.copy(snap[f"opt.{k}"], v)
        opt.t = snap["t"]

    def run(self, epoch: int, order: np.ndarray | None, bar: Any) -> np.ndarray:
        """Train one epoch in ``order`` (None: data order); returns each step's loss (host array)."""
        lazy, host_losses, isfinite = self.lazy, self.host_losses, math.isfinite
        bar.start_epoch(epoch)
        self._take_snapshot()
        if order is not None and self._device_order:
            order = self.net._be.asarray(order)
        lv = math.nan
        for step in range(self.n_batches):
            try:
                value = self._step(step, order)
            except RemoteRankError:
                self._restore_snapshot()  # steps after the remote failure used a partial gradient
                raise
            if lazy:
                self.dev_losses[step] = value
            else:
                lv = float(value)
                if not isfinite(lv):
                    self._diverged(epoch, order)
                host_losses[step] = lv
            if bar.enabled and step % bar.stride == 0:
                bar.batches(step + 1, None if lazy else lv)
        if lazy:
            host_losses[:] = np.asarray(to_numpy(self.dev_losses), dtype=np.float64)
            if not (np.all(np.isfinite(host_losses)) and self.optimizer.all_finite(self.net)):
                self._restore_snapshot()
                raise DivergenceError.epoch_restored(epoch, host_losses)
        elif not self.optimizer.all_finite(self.net):
            self._diverged(epoch, order)
        return host_losses

    def _diverged(self, epoch: int, order: np.ndarray | None) -> None:
        """Find the first failing step by replaying the epoch from its snapshot with every check,
        leave the state from before that step, and raise."""
        self._restore_snapshot()
        opt, net = self.optimizer, self.net
        for step in range(self.n_batches):
            value = float(self._step(step, order))
            if not math.isfinite(value) or not opt.all_finite(net):
                what = "loss" if not math.isfinite(value) else "gradient or update"
                self._restore_snapshot()
                for s in range(step):  # deterministic: the same steps give the same state
                    self._step(s, order)
                raise DivergenceError(
                    f"non-finite {what} at epoch {epoch + 1}, step {step + 1} (loss {value!r}); the parameters "
                    "and optimizer state are those from before this step: lower the learning rate or set clip_norm",
                    epoch + 1,
                    step + 1,
                )
        self._restore_snapshot()  # not reproduced (a non-deterministic kernel): the epoch's start
        raise DivergenceError(  # pragma: no cover - deterministic backends always reproduce it
            f"non-finite loss, gradient or update at epoch {epoch + 1}; the parameters and optimizer state were "
            "restored to those at the start of this epoch: lower the learning rate or set clip_norm",
            epoch + 1,
            None,
        )
