"""The training loop: batches gathered by index, backprop into the flat gradient, one optimizer step."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._compat import to_numpy
from flatnet_xp._validation import check_int, check_real, describe
from flatnet_xp.history import Callback, DivergenceError, History
from flatnet_xp.losses import CLASSIFICATION_LOSSES
from flatnet_xp.metrics import mean_over_batches
from flatnet_xp.network import check_loss
from flatnet_xp.optim import Adam, Optimizer

if TYPE_CHECKING:
    from flatnet_xp.network import FlatMLP

__all__ = ["fit", "fresh_entropy"]


class _EarlyStopping:
    """Tracks the best monitored loss and keeps ONE flat copy of the best parameters."""

    def __init__(self, net: FlatMLP, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_params = net.xp.asarray(net.params, copy=True)

    def update(self, net: FlatMLP, value: float, epoch: int) -> bool:
        """Record the epoch's monitored loss; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            net._be.ops.copy(net.params, out=self.best_params)
            return False
        self.wait += 1
        return self.wait >= self.patience

    def restore(self, net: FlatMLP) -> None:
        if self.best_epoch is not None:
            net._be.ops.copy(self.best_params, out=net.params)


def _progress_wanted(progress: bool | None) -> bool:
    if progress is None:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return False
        return sys.stderr.isatty() and not os.environ.get("CI")
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected True, False or None, got {describe(progress)}")
    return progress


class _Progress:
    """tqdm bars over epochs and over the batches of each epoch (refreshed a few dozen times an epoch)."""

    def __init__(self, enabled: bool, epochs: int, first_epoch: int, n_batches: int) -> None:
        self.enabled = enabled
        self.stride = max(1, n_batches // 40)
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.outer = tqdm(total=epochs, initial=first_epoch, desc="epochs", unit="epoch")
            self.inner: Any = None
            self.n_batches = n_batches

    def start_epoch(self, epoch: int) -> None:
        if self.enabled:
            self.inner = self._tqdm(total=self.n_batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False)

    def batches(self, done: int, running_loss: float | None) -> None:
        if self.enabled:
            self.inner.update(done - self.inner.n)
            if running_loss is not None:
                self.inner.set_postfix(loss=f"{running_loss:.4g}", refresh=False)

    def end_epoch(self, history: History) -> None:
        if self.enabled:
            self.inner.close()
            post = {"loss": f"{history.loss[-1]:.4g}"}
            if history.val_loss:
                post["val_loss"] = f"{history.val_loss[-1]:.4g}"
            self.outer.set_postfix(post, refresh=False)
            self.outer.update(1)

    def close(self) -> None:
        if self.enabled:
            if self.inner is not None:
                self.inner.close()
            self.outer.close()


def _check_callbacks(callbacks: Sequence[Callback] | Callback | None) -> list[Callback]:
    if callbacks is None:
        return []
    cbs = [callbacks] if callable(callbacks) else list(callbacks) if isinstance(callbacks, Sequence) else None
    if cbs is None or not all(callable(c) for c in cbs):
        raise TypeError(f"callbacks: expected a callable or a list of callables, got {describe(callbacks)}")
    return cbs


def fit(
    net: FlatMLP,
    X: Any,
    Y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: Optimizer | None = None,
    loss: str = "mse",
    shuffle: bool = True,
    seed: int | None = None,
    validation_data: tuple[Any, Any] | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    callbacks: Sequence[Callback] | Callback | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike[str] | None = None,
    comm: Any = None,
) -> History:
    """Train ``net`` on ``(X, Y)`` with mini-batch gradient descent.

    Parameters
    ----------
    X : array, shape (n, L_1)
        NumPy or the network's backend. Data already in the network's backend and dtype is used
        without any copy; otherwise each batch is converted on its own (the dataset is never copied).
    Y : array, shape (n, L_n)
        Targets; ``(n,)`` for one output, or integer class labels with ``loss="cross_entropy"``.
    epochs : int, default 10
        Total number of epochs (with ``resume``: including those already run).
    batch_size : int, default 32
        From 1 (per-sample SGD) to ``n`` (full batch); the last batch may be smaller.
    optimizer : Optimizer, default ``Adam(lr=1e-3)``
        Keeps its state across ``fit`` calls on the same network.
    loss : {"mse", "cross_entropy", "bce"}
    shuffle : bool, default True
        Visit the samples in a new random order each epoch, drawn from ``seed``.
    seed : int, optional
        Seed of the shuffling generator (``numpy.random.default_rng``).
    validation_data : (X_val, Y_val), optional
        Evaluated after each epoch: ``history.val_loss`` and, for classification losses,
        ``history.val_accuracy``.
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
        Write model, optimizer state, epoch, shuffle-RNG state and history atomically every
        ``checkpoint_every`` epochs (and after the last one).
    checkpoint_every : int, default 1
    resume : path, optional
        Restore all of the above from a checkpoint and continue until ``epochs`` epochs in total.
    comm : mpi4py communicator, optional
        Data-parallel training: every rank passes its own shard; see :mod:`flatnet_xp.distributed`.

    Returns
    -------
    History
        Also stored as ``net.history_``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data, before any work is done.
    DivergenceError
        The loss or gradient became non-finite; the network keeps its last finite weights.
    """
    epochs = check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    loss_fn = check_loss(loss)
    if optimizer is None:
        optimizer = Adam(lr=1e-3)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a flatnet_xp Optimizer (e.g. fx.SGD(lr=0.1)), got {describe(optimizer)}")
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle: expected a bool, got {describe(shuffle)}")
    if seed is not None:
        check_int("seed", seed, 0)
    if patience is not None:
        patience = check_int("patience", patience, 1)
    min_delta = check_real("min_delta", min_delta, minimum=0.0)
    cbs = _check_callbacks(callbacks)
    show = _progress_wanted(progress)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    data = net._dataset(X, Y, loss)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise TypeError(f"validation_data: expected a pair (X_val, Y_val), got {describe(validation_data)}")
        val = net._dataset(validation_data[0], validation_data[1], loss, suffix="_val")

    dist = None
    if comm is not None:
        from flatnet_xp.distributed import DataParallel

        dist = DataParallel(comm, net, data.n, seed)
    rank = 0 if dist is None else dist.rank
    entropy = fresh_entropy() if seed is None else seed
    if dist is not None:
        entropy = dist.shuffle_seed
    optimizer.bind(net)
    history = History()
    stopper = _EarlyStopping(net, patience, min_delta) if patience is not None else None
    first_epoch = 0
    net.loss_ = loss
    loop = _EpochLoop(net, data, loss_fn, optimizer, batch_size, dist)
    bar: _Progress | None = None
    # Overflow on the way to a divergence is reported once, as DivergenceError, not as NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        try:
            if resume is not None:  # inside the try: a rank that cannot resume tells the others
                from flatnet_xp.persistence import restore_checkpoint

                first_epoch, history, entropy = restore_checkpoint(resume, net, optimizer, stopper)
            bar = _Progress(show and rank == 0, epochs, first_epoch, loop.n_batches)
            for epoch in range(first_epoch, epochs):
                t0 = time.perf_counter()
                order = _epoch_order(entropy, rank, epoch, data.n) if shuffle else None
                losses = loop.run(epoch, order, bar)
                history.batch_loss.extend(losses.tolist())
                history.loss.append(float(losses @ loop.batch_sizes) / data.n)
                stop = _end_of_epoch(net, history, val, loss_fn, stopper, dist)
                history.epoch_time.append(time.perf_counter() - t0)
                bar.end_epoch(history)
                for cb in cbs:
                    stop = (cb(net, history) is True) or stop
                if dist is not None:
                    stop = dist.any(stop)
                last = stop or epoch + 1 == epochs
                if checkpoint is not None and rank == 0 and ((epoch + 1) % checkpoint_every == 0 or last):
                    from flatnet_xp.persistence import save_checkpoint

                    save_checkpoint(checkpoint, net, optimizer, epoch + 1, entropy, history, stopper)
                if dist is not None and last:
                    dist.finish()
                if stop:
                    history.stopped_early = epoch + 1 < epochs
                    break
        except BaseException as exc:
            if dist is not None and not isinstance(exc, DivergenceError):
                dist.fail(exc)
            raise
        finally:
            if bar is not None:
                bar.close()
    if stopper is not None:
        stopper.restore(net)
        history.best_epoch = stopper.best_epoch
    net.history_ = history
    return history


class _EpochLoop:
    """The steps of one epoch: gather a batch, loss and gradient, (all-reduce,) check, update.

    On the host every step's loss is checked before its update. On a GPU the losses stay on the
    device and are checked once per epoch (no host synchronisation per step); a divergence then
    restores the parameters of the epoch's start, kept in one flat snapshot.
    """

    def __init__(self, net: FlatMLP, data: Any, loss_fn: Any, optimizer: Optimizer, batch_size: int, dist: Any):
        self.net, self.data, self.loss_fn, self.optimizer, self.dist = net, data, loss_fn, optimizer, dist
        self.batch_size = batch_size
        n = data.n
        self.n_batches = -(-n // batch_size)
        self.batch_sizes = np.minimum(batch_size, n - np.arange(self.n_batches) * batch_size).astype(np.float64)
        be, xp = net._be, net.xp
        self.lazy = be.is_gpu
        self.snapshot = xp.asarray(net.params, copy=True) if self.lazy else None
        self.dev_losses: Any = xp.zeros(self.n_batches, dtype=xp.float64, device=be.device) if self.lazy else None
        self.host_losses = np.zeros(self.n_batches)

    def run(self, epoch: int, order: np.ndarray | None, bar: _Progress) -> np.ndarray:
        """Train one epoch in ``order`` (None: data order); returns each step's loss (host array)."""
        net, data, loss_fn, optimizer, dist = self.net, self.data, self.loss_fn, self.optimizer, self.dist
        n, batch_size, lazy, host_losses = data.n, self.batch_size, self.lazy, self.host_losses
        bar.start_epoch(epoch)
        if lazy:
            net._be.ops.copy(net.params, out=self.snapshot)
        for step in range(self.n_batches):
            lo = step * batch_size
            hi = min(lo + batch_size, n)
            x, y = data.batch(slice(lo, hi) if order is None else order[lo:hi])
            # One probe carries the loss and the gradient's finiteness: NaN/inf in either makes it
            # non-finite, and it equals the loss exactly when both are finite.
            value, probe = net._loss_and_grad_probe(x, y, loss_fn)
            if dist is not None:
                probe = dist.allreduce_step(net, probe)
            if lazy:
                self.dev_losses[step] = probe
            else:
                lv = float(probe)
                if not math.isfinite(lv):
                    raise DivergenceError(
                        f"non-finite loss or gradient at epoch {epoch}, step {step} (loss {float(value)!r}); "
                        "the network keeps the weights from before this step: lower the learning rate "
                        "or set clip_norm",
                        epoch,
                        step,
                    )
                host_losses[step] = lv
            optimizer.step(net)
            if bar.enabled and step % bar.stride == 0:
                bar.batches(step + 1, None if lazy else lv)
        if lazy:
            host_losses[:] = np.asarray(to_numpy(self.dev_losses), dtype=np.float64)
            if not np.all(np.isfinite(host_losses)):
                net._be.ops.copy(self.snapshot, out=net.params)
                bad = int(np.argmin(np.isfinite(host_losses)))
                raise DivergenceError(
                    f"non-finite loss or gradient at epoch {epoch}, step {bad}; the weights were restored "
                    "to those at the start of this epoch (the optimizer state was not)",
                    epoch,
                    bad,
                )
        return host_losses


def fresh_entropy() -> int:
    """128 bits of OS entropy as an int (the shuffle seed when none is given)."""
    return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]


def _epoch_order(entropy: int, rank: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a stream of its own per (rank, epoch), derived from ``entropy``.

    Deriving each epoch's permutation (rather than advancing one generator) makes the whole shuffle
    state a single integer, so a resumed run, in any process on any rank, draws the same orders.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(rank, epoch))).permutation(n)


def _end_of_epoch(
    net: FlatMLP, history: History, val: Any, loss_fn: Any, stopper: _EarlyStopping | None, dist: Any
) -> bool:
    """Validation metrics and early stopping for the epoch just finished; True to stop."""
    monitored = history.loss[-1]
    if val is not None:
        v_loss, v_acc = mean_over_batches(net, val, loss_fn, 4096)
        if dist is not None:
            v_loss, v_acc = dist.mean_pair(v_loss, v_acc)
        history.val_loss.append(v_loss)
        if loss_fn.name in CLASSIFICATION_LOSSES:
            history.val_accuracy.append(v_acc)
        monitored = v_loss
    if stopper is None:
        return False
    return stopper.update(net, monitored, len(history.loss) - 1)
