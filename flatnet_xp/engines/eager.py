"""One epoch of ``fit`` on a mutable backend (NumPy, CuPy, PyTorch, array-api-strict), step by step.

The compiled counterpart for JAX is :mod:`.compiled`; both give the training loop the same interface
(``plan`` and ``run(epoch, order, bar)`` returning each step's loss as a host array).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp.backends import to_numpy
from flatnet_xp.distributed import RemoteRankError
from flatnet_xp.engines.plan import BatchPlan, check_epoch
from flatnet_xp.history import DivergenceError
from flatnet_xp.params import FlatParams, Snapshot

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
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

    def __init__(
        self, params: FlatParams, data: Dataset, loss: Loss, optimizer: Optimizer, plan: BatchPlan, dist: Any
    ) -> None:
        self.params, self.data, self.loss, self.optimizer, self.dist, self.plan = (
            params,
            data,
            loss,
            optimizer,
            dist,
            plan,
        )
        be = params.backend
        self.lazy = be.is_gpu
        self._grad_views = params.grad_views
        self._views = params.views  # mutable backends only: the buffer never moves, its views stay valid
        self._ws = {m: F.Workspace(params.spec, m) for m in {plan.batch_size, plan.last_size}}
        self._snapshot: Snapshot | None = None
        self._state = optimizer.state_of(params)
        if self.lazy:
            self.dev_losses = params.xp.zeros(plan.n_batches, dtype=params.xp.float64, device=be.device)
        self.host_losses = np.zeros(plan.n_batches)
        # On a GPU with the data already there, an epoch's order goes to the device once, not per step.
        self._device_order = (
            self.lazy and data._x_native and (data.labels or data._y_native) and data.sample_weight is None
        )

    def _step(self, step: int, order: Any) -> Any:
        """One step; returns the (averaged) batch loss as a 0-d array."""
        p = self.params
        rows = self.plan.rows(step, order)
        x, y, sw = self.data.batch(rows)
        ws = self._ws[int(x.shape[0])]
        value, _ = F.loss_and_grad(p.spec, self._views, x, y, sw, self.loss, ws, self._grad_views)
        if self.dist is not None:
            value = self.dist.allreduce_step(value)
        self.optimizer.apply(p, self._state)
        return value

    def run(self, epoch: int, order: np.ndarray | None, bar: Any) -> np.ndarray:
        """Train one epoch in ``order`` (None: data order); returns each step's loss (host array)."""
        lazy, host_losses, isfinite, p = self.lazy, self.host_losses, math.isfinite, self.params
        bar.start_epoch(epoch)
        self._state = self.optimizer.state_of(p)
        self._snapshot = p.snapshot(self._snapshot, optimizer=True)
        steps: Any = order
        if order is not None and self._device_order:
            steps = p.backend.asarray(order)
        lv = math.nan
        for step in range(self.plan.n_batches):
            try:
                value = self._step(step, steps)
            except RemoteRankError:
                p.restore(self._snapshot)  # steps after the remote failure used a partial gradient
                raise
            if lazy:
                self.dev_losses[step] = value
            else:
                lv = float(value)
                if not isfinite(lv):
                    self._diverged(epoch, steps)
                host_losses[step] = lv
            if bar.enabled and step % bar.stride == 0:
                bar.batches(step + 1, None if lazy else lv)
        if lazy:
            host_losses[:] = np.asarray(to_numpy(self.dev_losses), dtype=np.float64)
            try:
                check_epoch(epoch, host_losses, p.all_finite())
            except DivergenceError:
                p.restore(self._snapshot)
                raise
        elif not p.all_finite():
            self._diverged(epoch, steps)
        return host_losses

    def _diverged(self, epoch: int, order: Any) -> None:
        """Find the first failing step by replaying the epoch from its snapshot with every check,
        leave the state from before that step, and raise."""
        p, snap = self.params, self._snapshot
        assert snap is not None
        p.restore(snap)
        for step in range(self.plan.n_batches):
            value = float(self._step(step, order))
            if not math.isfinite(value) or not p.all_finite():
                what = "loss" if not math.isfinite(value) else "gradient or update"
                p.restore(snap)
                for s in range(step):  # deterministic: the same steps give the same state
                    self._step(s, order)
                raise DivergenceError(
                    f"non-finite {what} at epoch {epoch + 1}, step {step + 1} (loss {value!r}); the parameters "
                    "and optimizer state are those from before this step: lower the learning rate or set clip_norm",
                    epoch + 1,
                    step + 1,
                )
        p.restore(snap)  # not reproduced (a non-deterministic kernel): the epoch's start
        raise DivergenceError(  # pragma: no cover - deterministic backends always reproduce it
            f"non-finite loss, gradient or update at epoch {epoch + 1}; the parameters and optimizer state were "
            "restored to those at the start of this epoch: lower the learning rate or set clip_norm",
            epoch + 1,
            None,
        )
