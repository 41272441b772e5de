"""``fit``: the data checked before any work, then epochs of mini-batch steps, validation, stopping,
checkpoints. The steps of an epoch run eagerly (:mod:`flatnet_xp.engines.eager`: NumPy, CuPy,
PyTorch, array-api-strict) or as one compiled program per epoch (:mod:`flatnet_xp.engines.compiled`:
JAX); full-batch L-BFGS runs in :mod:`flatnet_xp.engines.lbfgs`.

Guarantees kept here (and tested): no epoch leaves non-finite parameters behind
(:class:`~flatnet_xp.DivergenceError` restores them); the last checkpoint holds exactly what ``fit``
returned; resuming continues the same run bit-identically on NumPy or refuses, naming what differs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._memory import check_training_memory
from flatnet_xp._random import epoch_order, fresh_entropy
from flatnet_xp._validation import describe
from flatnet_xp.distributed import DataParallel, agree, is_communicator
from flatnet_xp.engines.compiled import CompiledEpochs
from flatnet_xp.engines.eager import EagerEpochs
from flatnet_xp.engines.lbfgs import CHUNK_ROWS, fit_lbfgs
from flatnet_xp.engines.plan import BatchPlan
from flatnet_xp.history import DivergenceError, History
from flatnet_xp.metrics import evaluate_dataset
from flatnet_xp.optim import Optimizer
from flatnet_xp.params import GRAD_EXTRA_SLOTS, FlatParams
from flatnet_xp.schedules import plateau_of
from flatnet_xp.solvers import LBFGS
from flatnet_xp.training.progress import Progress
from flatnet_xp.training.resume import read_resume, restore, restore_model, run_signature, save_checkpoint
from flatnet_xp.training.run import RunSpec
from flatnet_xp.training.stopping import EarlyStopping

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss

__all__ = ["EVAL_BATCH", "fit"]

#: Rows per batch when evaluating validation data.
EVAL_BATCH = 4096


def fit(
    params: FlatParams,
    X: Any,
    Y: Any,
    *,
    sample_weight: Any = None,
    validation_data: tuple[Any, ...] | None = None,
    comm: Any = None,
    model: Any = None,
    model_meta: Callable[[], dict[str, Any]] | None = None,
    on_start: Callable[[RunSpec], None] | None = None,
    **arguments: Any,
) -> History:
    """Train ``params`` on ``(X, Y)`` (every argument: :meth:`flatnet_xp.FlatMLP.fit`).

    Parameters
    ----------
    params : FlatParams
        Trained in place (replaced on JAX).
    X, Y, sample_weight, validation_data, comm
        As in :meth:`flatnet_xp.FlatMLP.fit`; checked here before any work.
    model : object
        What callbacks receive as their first argument (the ``FlatMLP``).
    model_meta : callable
        The network's file metadata (for checkpoints), read when one is written.
    on_start : callable
        Called with the run's description once every check passed, before the first change to
        the parameters.
    **arguments
        The run's description, checked by :meth:`RunSpec.build` (``epochs``, ``batch_size``,
        ``optimizer``, ``loss``, ``shuffle``, ``seed``, ...).
    """
    try:
        if comm is not None and not params.backend.mutable:
            raise ValueError(
                "comm: data-parallel training is not supported on the JAX backend (use numpy, torch or cupy)"
            )
        run = RunSpec.build(comm=comm, **arguments)
        data = params.dataset(X, Y, run.loss, sample_weight=sample_weight)
        val = _validation_dataset(params, validation_data, run.loss)
        _check_memory(params, run, data.n)
    except Exception as exc:
        if comm is not None and is_communicator(comm):  # every rank learns of it, instead of waiting for it
            agree(comm, exc, None)
        raise
    if comm is not None:
        agree(comm, None, run.collective_config(val is not None))
    if on_start is not None:
        on_start(run)
    with params.backend.precision(params.dtype_name):  # JAX: the scoped x64 context, never a global switch
        if isinstance(run.optimizer, LBFGS):
            return fit_lbfgs(
                params, data, val, run.loss, run.optimizer, run.callbacks, model, run.patience, run.min_delta
            )
        return _Training(params, data, val, run, comm, model, model_meta).fit()


def _validation_dataset(params: FlatParams, validation_data: Any, loss: Loss) -> Dataset | None:
    if validation_data is None:
        return None
    if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
        raise TypeError(
            "validation_data: expected (X_val, Y_val) or (X_val, Y_val, sample_weight_val), "
            f"got {describe(validation_data)}"
        )
    sw = validation_data[2] if len(validation_data) == 3 else None
    return params.dataset(validation_data[0], validation_data[1], loss, sample_weight=sw, suffix="_val")


def _check_memory(params: FlatParams, run: RunSpec, n: int) -> None:
    """Refuse, before any work, a fit whose buffers do not fit in this machine's memory."""
    opt, lay, on_gpu = run.optimizer, params.layout, params.backend.is_gpu
    grads = 0 if params.allocated_grads else lay.n_params + GRAD_EXTRA_SLOTS
    if isinstance(opt, LBFGS):  # float64 parameters, gradient, correction pairs and scipy's work arrays
        check_training_memory(
            lay, params.dtype_name, copies=2 * opt.memory + 6, grads=grads, batch_size=min(n, CHUNK_ROWS),
            on_gpu=on_gpu, copy_itemsize=8, rows_name=None,
        )  # fmt: skip
        return
    assert isinstance(opt, Optimizer)
    state = len(opt.buffer_names)
    current = params.optimizer_state
    new_state = 0 if current is not None and current.owner() is opt else state  # already allocated
    copies = new_state + (1 + state)  # the optimizer's buffers and the epoch's snapshot of them and the params
    if run.patience is not None:
        copies += 1 + (run.checkpoint is not None)  # the best weights (and the live ones, to checkpoint)
    check_training_memory(
        lay, params.dtype_name, copies=copies, grads=grads, batch_size=min(run.batch_size, n), on_gpu=on_gpu
    )


def _order(shuffle: Any, entropy: int, rank: int, epoch: int, n: int) -> np.ndarray | None:
    """The sample order of ``epoch``: None (data order), drawn from the entropy, or the caller's."""
    if not callable(shuffle):
        return epoch_order(entropy, rank, epoch, n) if shuffle else None
    order = np.asarray(shuffle(epoch, n))
    if order.shape != (n,) or order.dtype.kind not in "iu":
        raise ValueError(f"shuffle: order({epoch}, {n}) returned {describe(order)}; expected {n} integer indices")
    order = order.astype(np.int64)  # a copy: the caller may reuse (and change) its array
    seen = np.zeros(n, dtype=bool)
    inside = (order >= 0) & (order < n)
    seen[order[inside]] = True
    if not (inside.all() and seen.all()):
        raise ValueError(f"shuffle: order({epoch}, {n}) is not a permutation of range({n})")
    return order


class _Training:
    """One mini-batch ``fit``: the epochs, validation, stopping, checkpoints (see the module doc)."""

    def __init__(
        self,
        params: FlatParams,
        data: Dataset,
        val: Dataset | None,
        run: RunSpec,
        comm: Any,
        model: Any,
        model_meta: Callable[[], dict[str, Any]] | None,
    ) -> None:
        self.params, self.data, self.val, self.run, self.model = params, data, val, run, model
        self.model_meta = model_meta
        self.optimizer = run.stochastic
        self.dist = DataParallel(comm, params, data.n, run.seed) if comm is not None else None
        self.rank = 0 if self.dist is None else self.dist.rank
        self.plan = BatchPlan(data.n, run.batch_size)

    def _meta(self) -> dict[str, Any]:
        assert self.model_meta is not None
        return self.model_meta()

    def fit(self) -> History:
        params, run, dist, optimizer = self.params, self.run, self.dist, self.optimizer
        needs_signature = run.checkpoint is not None or run.resume is not None
        signature = run_signature(params, run, self.data, self.val, dist) if needs_signature else {}
        ckpt = None
        if run.resume is not None:
            try:
                ckpt = read_resume(run, signature)
            except Exception as exc:
                if dist is not None:  # a rank that cannot read or match its checkpoint stops every rank
                    agree(dist.comm, exc, None)
                raise
            if dist is not None:
                agree(dist.comm, None, {})
        entropy = run.seed if run.seed is not None else (dist.shuffle_seed if dist is not None else 0)
        if run.seed is None and dist is None and (run.shuffle or run.checkpoint is not None):
            entropy = fresh_entropy()  # only when something uses it
        optimizer.bind(params)
        history = History()
        stopper = EarlyStopping(params, run.patience, run.min_delta) if run.patience is not None else None
        first_epoch = run.initial_epoch
        if ckpt is not None:
            restore(ckpt, params, optimizer, stopper)
            history, entropy, first_epoch = ckpt.history(), ckpt.entropy, ckpt.epoch
            if ckpt.finished not in (None, "completed") or first_epoch >= run.epochs:
                restore_model(ckpt, params)  # a finished run: exactly what its fit returned
                if dist is not None:
                    dist.finish()
                return history
        if params.backend.mutable:
            engine: Any = EagerEpochs(params, self.data, run.loss, optimizer, self.plan, dist)
        else:
            engine = CompiledEpochs(params, self.data, run.loss, optimizer, self.plan)
        reason, epochs_done = self._epochs(engine, history, stopper, entropy, first_epoch, signature)
        live = None
        if stopper is not None:
            live = params.snapshot().flat if run.checkpoint is not None else None
            if not stopper.restore(params):
                live = None
            history.best_epoch = stopper.best_epoch
        history.stopped_early = reason not in (None, "completed")
        if run.checkpoint is not None and self.rank == 0:
            save_checkpoint(
                run.checkpoint, params, self._meta(), optimizer, epochs_done, entropy, history, stopper, signature,
                reason or "completed", live,
            )  # fmt: skip
        return history

    def _epochs(
        self,
        engine: Any,
        history: History,
        stopper: EarlyStopping | None,
        entropy: int,
        first_epoch: int,
        signature: dict[str, Any],
    ) -> tuple[str | None, int]:
        """The epochs; returns why training ended (a :data:`~flatnet_xp.persistence.FINISH_REASONS`
        entry) and the number of epochs done, counted from the run's start."""
        params, run, dist, plan, rank = self.params, self.run, self.dist, self.plan, self.rank
        bar: Progress | None = None
        reason = None
        done = first_epoch
        # Overflow on the way to a divergence is reported once, as DivergenceError, not as NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            try:
                bar = Progress(run.show_progress and rank == 0, run.epochs, first_epoch, plan.n_batches)
                for epoch in range(first_epoch, run.epochs):
                    t0 = time.perf_counter()
                    losses = engine.run(epoch, _order(run.shuffle, entropy, rank, epoch, plan.n), bar)
                    history.batch_loss.extend(losses.tolist())
                    history.loss.append(plan.epoch_loss(losses))
                    done = epoch + 1
                    reason = self._end_of_epoch(history, stopper, done)
                    history.epoch_time.append(time.perf_counter() - t0)
                    bar.end_epoch(history)
                    for cb in run.callbacks:
                        if cb(self.model, history) is True and reason is None:
                            reason = "callback"
                    if dist is not None:
                        reason = "callback" if dist.any(reason is not None) and reason is None else reason
                    last = reason is not None or epoch + 1 == run.epochs
                    if (
                        run.checkpoint is not None
                        and rank == 0
                        and (epoch + 1) % run.checkpoint_every == 0
                        and not last
                    ):
                        save_checkpoint(
                            run.checkpoint, params, self._meta(), self.optimizer, epoch + 1, entropy, history,
                            stopper, signature,
                        )  # fmt: skip
                    if dist is not None and last:
                        dist.finish()
                    if reason is not None:
                        break
                else:
                    reason = "completed" if run.epochs > first_epoch else reason
            except BaseException as exc:
                if dist is not None and not isinstance(exc, DivergenceError):
                    dist.fail(exc)
                raise
            finally:
                if bar is not None:
                    bar.close()
        return reason, done

    def _end_of_epoch(self, history: History, stopper: EarlyStopping | None, epoch: int) -> str | None:
        """Validation metrics, early stopping and plateau schedules for ``epoch`` (counted from 1), just
        finished; returns the reason to stop, or None."""
        params, val, loss, dist = self.params, self.val, self.run.loss, self.dist
        monitored = history.loss[-1]
        if val is not None:
            scores = evaluate_dataset(params, val, loss, EVAL_BATCH, r2=not loss.classification)
            v_loss, v_acc, v_score = scores.loss, scores.accuracy, scores.score(loss)
            if dist is not None:
                v_loss, v_acc = dist.mean_pair(v_loss, v_acc)
                v_score = v_acc if loss.classification else dist.mean_pair(v_score, math.nan)[0]
            history.val_loss.append(v_loss)
            history.val_score.append(v_score)
            if loss.classification:
                history.val_accuracy.append(v_acc)
            monitored = v_loss
        reason = None
        plateau = plateau_of(self.optimizer.lr)  # also inside a Warmup
        if plateau is not None and plateau.end_epoch(monitored):
            reason = "schedule"
        if stopper is not None and stopper.update(params, monitored, epoch):
            reason = reason or "early_stopping"
        return reason
