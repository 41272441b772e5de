"""``fit``: arguments checked before any work, then epochs of mini-batch steps, validation, stopping,
checkpoints. The steps of an epoch run eagerly (:mod:`flatnet_xp.eager`: NumPy, CuPy, PyTorch,
array-api-strict) or as one compiled program per epoch (:mod:`flatnet_xp.compiled`: JAX);
full-batch L-BFGS runs in :mod:`flatnet_xp.solvers`.

Guarantees kept here (and tested): a second concurrent ``fit`` on the same network raises
``RuntimeError``; no epoch leaves non-finite parameters behind (:class:`DivergenceError` restores
them); the last checkpoint holds exactly what ``fit`` returned; resuming continues the same run
bit-identically on NumPy or refuses, naming what differs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._atomic import check_output_path
from flatnet_xp._compat import precision
from flatnet_xp._validation import check_int, check_real, describe
from flatnet_xp.distributed import DataParallel, agree, check_communicator, is_communicator
from flatnet_xp.history import Callback, DivergenceError, History
from flatnet_xp.losses import Loss, get_loss
from flatnet_xp.metrics import evaluate_dataset
from flatnet_xp.optim import Adam, Optimizer
from flatnet_xp.solvers import LBFGS

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.network import FlatMLP
    from flatnet_xp.persistence import Checkpoint

__all__ = ["fit", "fresh_entropy"]

#: Rows per batch when evaluating validation data.
EVAL_BATCH = 4096


class _EarlyStopping:
    """Tracks the best monitored loss and keeps ONE flat copy of the best parameters."""

    def __init__(self, net: FlatMLP, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_params = net._be.ops.copy(net.params)

    def update(self, net: FlatMLP, value: float, epoch: int) -> bool:
        """Record the monitored loss of ``epoch`` (counted from 1); True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_params = net._be.ops.copy(net.params, self.best_params)
            return False
        self.wait += 1
        return self.wait >= self.patience

    def restore(self, net: FlatMLP) -> bool:
        """Put the best parameters back; True when that changed them."""
        if self.best_epoch is None:
            return False
        be = net._be
        if be.mutable:
            be.ops.copy(self.best_params, net.params)
        else:
            net.params = self.best_params
        return True


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
            if self.inner is not None:
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


@dataclass
class _Run:
    """Everything ``fit`` was asked to do, checked."""

    epochs: int
    batch_size: int
    optimizer: Optimizer | LBFGS
    loss: Loss
    shuffle: bool | Callable[[int, int], Any]
    seed: int | None
    patience: int | None
    min_delta: float
    callbacks: list[Callback]
    show: bool
    checkpoint: Any
    checkpoint_every: int
    resume: Any
    initial_epoch: int


def _training_settings(run: _Run) -> dict[str, Any]:
    """How the steps are made (JSON-serialisable): part of a run's signature and of what the ranks
    of a data-parallel fit compare."""
    opt = run.optimizer
    return {
        "loss": {"name": run.loss.name, "scale": run.loss.scale},
        "optimizer": {"name": opt.name, **opt.hyperparameters()},
        "batch_size": run.batch_size,
        "early_stopping": None if run.patience is None else {"patience": run.patience, "min_delta": run.min_delta},
        "shuffle": run.shuffle,
    }


def _collective_config(run: _Run, val: Dataset | None) -> dict[str, Any]:
    """What every rank of a data-parallel fit must agree on (compared by ``distributed.agree``)."""
    return {
        **_training_settings(run),
        "epochs": run.epochs,
        "learning rates at steps 1, 2, 11, 101, 1001": _sampled_rates(run.optimizer),
        "validation_data": val is not None,
        "checkpoint": run.checkpoint is not None,
        "checkpoint_every": run.checkpoint_every,
        "resume": run.resume is not None,
        "initial_epoch": run.initial_epoch,
    }


def _sampled_rates(opt: Optimizer | LBFGS) -> tuple[Any, ...]:
    """A few values of the learning rate: schedules given as functions are described by their
    name only, so two ranks with different functions of the same name are told apart by these."""
    lr = getattr(opt, "lr", None)
    if lr is None:
        return ()
    values: list[Any] = []
    for t in (0, 1, 10, 100, 1000):
        try:
            values.append(float(lr(t)))
        except Exception as exc:  # the run itself will report it; here it is only compared
            values.append(f"{type(exc).__name__}")
    return tuple(values)


def _check_arguments(**kw: Any) -> _Run:
    epochs = check_int("epochs", kw["epochs"], 0)
    batch_size = check_int("batch_size", kw["batch_size"], 1)
    loss = get_loss(kw["loss"])
    optimizer = Adam(lr=1e-3) if kw["optimizer"] is None else kw["optimizer"]
    if not isinstance(optimizer, Optimizer | LBFGS):
        raise TypeError(f"optimizer: expected a flatnet_xp optimizer (e.g. fx.SGD(lr=0.1)), got {describe(optimizer)}")
    if not isinstance(kw["shuffle"], bool) and not callable(kw["shuffle"]):
        raise TypeError(f"shuffle: expected a bool or a function order(epoch, n), got {describe(kw['shuffle'])}")
    if callable(kw["shuffle"]) and (kw["checkpoint"] is not None or kw["resume"] is not None or kw["comm"] is not None):
        raise ValueError("shuffle: orders from a function cannot be checkpointed or shared out; pass True and a seed")
    seed = kw["seed"]
    if seed is not None:
        seed = check_int("seed", seed, 0)
    patience = None if kw["patience"] is None else check_int("patience", kw["patience"], 1)
    min_delta = check_real("min_delta", kw["min_delta"], minimum=0.0)
    checkpoint_every = check_int("checkpoint_every", kw["checkpoint_every"], 1)
    checkpoint, resume = kw["checkpoint"], kw["resume"]
    if checkpoint is not None:
        check_output_path(checkpoint, "checkpoint")
    if resume is not None and not isinstance(resume, str | os.PathLike):
        raise TypeError(f"resume: expected a file path (str or os.PathLike), got {describe(resume)}")
    if kw["comm"] is not None:
        check_communicator(kw["comm"])
    initial_epoch = check_int("initial_epoch", kw["initial_epoch"], 0)
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch: expected at most epochs={epochs}, got {initial_epoch}")
    if initial_epoch and resume is not None:
        raise ValueError("initial_epoch: resume continues from the checkpoint's epoch; pass one or the other")
    if isinstance(optimizer, LBFGS) and (checkpoint is not None or resume is not None or kw["comm"] is not None):
        raise ValueError(
            "optimizer: L-BFGS runs full-batch in one scipy call: checkpoint, resume and comm are not supported"
        )
    return _Run(
        epochs,
        batch_size,
        optimizer,
        loss,
        kw["shuffle"],
        seed,
        patience,
        min_delta,
        _check_callbacks(kw["callbacks"]),
        _progress_wanted(kw["progress"]),
        checkpoint,
        checkpoint_every,
        resume,
        initial_epoch,
    )


def fit(
    net: FlatMLP,
    X: Any,
    Y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: Optimizer | LBFGS | None = None,
    loss: str | Loss = "mse",
    sample_weight: Any = None,
    shuffle: bool | Callable[[int, int], Any] = True,
    seed: int | None = None,
    validation_data: tuple[Any, ...] | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    callbacks: Sequence[Callback] | Callback | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike[str] | None = None,
    comm: Any = None,
    initial_epoch: int = 0,
) -> History:
    """Train ``net`` on ``(X, Y)`` with mini-batch gradient descent (or full-batch L-BFGS).

    Parameters
    ----------
    net : FlatMLP
        The network to train, in place (``net.fit(X, Y, ...)`` calls this function).
    X : array or scipy.sparse matrix, shape (n, L_1)
        NumPy or the network's backend. Data already in the network's backend and dtype is used
        without any copy; otherwise each batch is converted on its own (the dataset is never copied;
        a sparse matrix is densified one batch at a time).
    Y : array, shape (n, L_n)
        Targets; ``(n,)`` for one output, or integer class labels with ``loss="cross_entropy"``.
    epochs : int, default 10
        Total number of epochs (with ``resume``: including those already run). Not used by L-BFGS.
    batch_size : int, default 32
        From 1 (per-sample SGD) to ``n`` (full batch); the last batch may be smaller.
    optimizer : Optimizer or LBFGS, default ``Adam(lr=1e-3)``
        Keeps its state across ``fit`` calls on the same network. :class:`~flatnet_xp.LBFGS` runs
        scipy's L-BFGS-B full-batch on the flat parameter vector instead of epochs.
    loss : {"mse", "cross_entropy", "bce", "poisson"} or Loss
    sample_weight : array, shape (n,), optional
        Non-negative weights: each batch's loss is the weighted average of its samples' losses.
    shuffle : bool or callable, default True
        Visit the samples in a new random order each epoch, drawn from ``seed``; or a function
        ``order(epoch, n)`` returning the epoch's order (a permutation of ``range(n)``, an int
        array), called once per epoch (not with ``checkpoint``, ``resume`` or ``comm``).
    seed : int, optional
        Seed of the shuffling generator (``numpy.random.SeedSequence``).
    validation_data : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), optional
        Evaluated after each epoch: ``history.val_loss``, ``history.val_score`` (accuracy or R^2)
        and, for classification losses, ``history.val_accuracy``.
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
        Write model, optimizer state, epoch, shuffle state, history and the run's signature
        atomically every ``checkpoint_every`` epochs; the last one, written after early stopping
        restored the best weights, holds exactly what ``fit`` returns. Checked before training.
    checkpoint_every : int, default 1
    resume : path, optional
        Continue the run saved in a checkpoint until ``epochs`` epochs in total. The checkpoint
        must come from the same run (network, dtype, loss, optimizer and its hyperparameters,
        batch size, shuffle, seed, and the same training and validation data): anything else is a
        ``ValueError`` naming each difference. A finished run returns at once with its weights.
    comm : mpi4py communicator, optional
        Data-parallel training: every rank passes its own shard; see :mod:`flatnet_xp.distributed`.
    initial_epoch : int, default 0
        Count epochs from here (Keras's ``initial_epoch``): train epochs ``initial_epoch + 1`` to
        ``epochs``, each shuffled as that epoch of a run started from 0 with the same ``seed``, so
        ``fit(epochs=k + 1, initial_epoch=k)`` called for ``k = 0, 1, ...`` visits the samples in the
        same orders as one ``fit(epochs=K)``.

    Returns
    -------
    History
        Also stored as ``net.history_``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments, data or paths, before any work is done.
    RuntimeError
        Another ``fit`` is running on this network (in another thread).
    DivergenceError
        The loss, gradient or update became non-finite; the parameters and optimizer state were
        restored (see :class:`~flatnet_xp.DivergenceError`).
    """
    try:
        if comm is not None and not net._be.mutable:
            raise ValueError(
                "comm: data-parallel training is not supported on the JAX backend (use numpy, torch or cupy)"
            )
        run = _check_arguments(
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            loss=loss,
            shuffle=shuffle,
            seed=seed,
            patience=patience,
            min_delta=min_delta,
            callbacks=callbacks,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            comm=comm,
            initial_epoch=initial_epoch,
        )
        data = net._dataset(X, Y, run.loss, sample_weight=sample_weight)
        val = _validation_dataset(net, validation_data, run.loss)
        _check_memory(net, run, data.n)
    except Exception as exc:
        if comm is not None and is_communicator(comm):  # every rank learns of it, instead of waiting for it
            agree(comm, exc, None)
        raise
    if comm is not None:
        agree(comm, None, _collective_config(run, val))
    if not net._fit_lock.acquire(blocking=False):
        raise RuntimeError(
            "fit: another fit is already running on this network (in another thread); "
            "train independent copies (net.copy()) in parallel instead"
        )
    try:
        with precision(net._be, net.dtype):  # JAX float64: the scoped x64 context, never a global switch
            if isinstance(run.optimizer, LBFGS):
                from flatnet_xp.solvers import fit_lbfgs

                history = fit_lbfgs(net, data, val, run.loss, run.optimizer, run.callbacks, run.patience, run.min_delta)
            else:
                history = _fit_epochs(net, data, val, run, comm)
    finally:
        net._fit_lock.release()
    net.history_ = history
    return history


def _validation_dataset(net: FlatMLP, validation_data: Any, loss: Loss) -> Dataset | None:
    if validation_data is None:
        return None
    if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
        raise TypeError(
            "validation_data: expected (X_val, Y_val) or (X_val, Y_val, sample_weight_val), "
            f"got {describe(validation_data)}"
        )
    sw = validation_data[2] if len(validation_data) == 3 else None
    return net._dataset(validation_data[0], validation_data[1], loss, sample_weight=sw, suffix="_val")


def _run_signature(net: FlatMLP, run: _Run, data: Dataset, val: Dataset | None, dist: Any) -> dict[str, Any]:
    """What defines a run: a resume must match all of it (see ``fit``'s ``resume``). Data-parallel:
    every rank's shard, in rank order."""
    from flatnet_xp.persistence import fingerprint

    shards = fingerprint(data), fingerprint(val)
    if dist is not None:
        everyone = dist.comm.allgather(shards)
        shards = {f"rank{r}": s[0] for r, s in enumerate(everyone)}, {f"rank{r}": s[1] for r, s in enumerate(everyone)}
    return {
        "layer_sizes": list(net.layout.sizes),
        "activations": list(net.activations),
        "dtype": net.dtype_name,
        **_training_settings(run),
        "seed": run.seed,
        "data": shards[0],
        "validation": shards[1],
    }


def _read_resume(run: _Run, signature: dict[str, Any]) -> Checkpoint:
    from flatnet_xp.persistence import read_checkpoint

    ckpt = read_checkpoint(run.resume)
    diffs = ckpt.differences(signature)
    if diffs:
        raise ValueError(
            f"resume: {run.resume} holds a different run ({'; '.join(diffs)}). To train further on new data or "
            "settings, load the model (FlatMLP.load) and call fit without resume"
        )
    if run.epochs < ckpt.epoch:
        raise ValueError(
            f"epochs: the checkpoint {run.resume} has already run {ckpt.epoch} epochs, got epochs={run.epochs}"
        )
    return ckpt


def _check_memory(net: FlatMLP, run: _Run, n: int) -> None:
    """Refuse, before any work, a fit whose buffers do not fit in this machine's memory."""
    opt = run.optimizer
    if isinstance(opt, LBFGS):  # float64 parameters, gradient, correction pairs and scipy's work arrays
        from flatnet_xp.solvers import CHUNK_ROWS

        net._check_training_memory(2 * opt.memory + 6, min(n, CHUNK_ROWS), copy_itemsize=8, rows_name=None)
        return
    state = len(opt.buffer_names)
    new_state = 0 if opt._net_id == id(net) and len(opt.state) == state else state  # already allocated
    copies = new_state + (1 + state)  # the optimizer's buffers and the epoch's snapshot of them and the params
    if run.patience is not None:
        copies += 1 + (run.checkpoint is not None)  # the best weights (and the live ones, to checkpoint)
    net._check_training_memory(copies, min(run.batch_size, n))


def _fit_epochs(net: FlatMLP, data: Dataset, val: Dataset | None, run: _Run, comm: Any) -> History:
    optimizer = run.optimizer
    assert isinstance(optimizer, Optimizer)
    dist = None
    if comm is not None:
        dist = DataParallel(comm, net, data.n, run.seed)
    needs_signature = run.checkpoint is not None or run.resume is not None
    signature = _run_signature(net, run, data, val, dist) if needs_signature else {}
    ckpt = None
    if run.resume is not None:
        try:
            ckpt = _read_resume(run, signature)
        except Exception as exc:
            if dist is not None:  # a rank that cannot read or match its checkpoint stops every rank
                agree(dist.comm, exc, None)
            raise
        if dist is not None:
            agree(dist.comm, None, {})
    rank = 0 if dist is None else dist.rank
    entropy = run.seed if run.seed is not None else (dist.shuffle_seed if dist is not None else 0)
    if run.seed is None and dist is None and (run.shuffle or run.checkpoint is not None):
        entropy = fresh_entropy()  # only when something uses it
    optimizer.bind(net)
    history = History()
    stopper = _EarlyStopping(net, run.patience, run.min_delta) if run.patience is not None else None
    first_epoch = run.initial_epoch
    net.loss_ = run.loss.name if run.loss.scale == 1.0 else run.loss
    if ckpt is not None:
        ckpt.restore(net, optimizer, stopper)
        history, entropy, first_epoch = ckpt.history(), ckpt.entropy, ckpt.epoch
        if ckpt.finished not in (None, "completed") or first_epoch >= run.epochs:
            ckpt.restore_model(net)  # a finished run: exactly what its fit returned
            if dist is not None:
                dist.finish()
            return history
    if net._be.mutable:
        from flatnet_xp.eager import EagerEpochs

        runner: Any = EagerEpochs(net, data, run.loss, optimizer, run.batch_size, dist)
    else:
        from flatnet_xp.compiled import CompiledEpochs

        runner = CompiledEpochs(net, data, run.loss, optimizer, run.batch_size)
    reason, epochs_done = _train(
        net, data, val, run, optimizer, dist, runner, history, stopper, entropy, first_epoch, signature
    )
    live = None
    if stopper is not None:
        live = net._be.ops.copy(net.params) if run.checkpoint is not None else None
        if not stopper.restore(net):
            live = None
        history.best_epoch = stopper.best_epoch
    history.stopped_early = reason not in (None, "completed")
    if run.checkpoint is not None and rank == 0:
        from flatnet_xp.persistence import save_checkpoint

        save_checkpoint(
            run.checkpoint,
            net,
            optimizer,
            epochs_done,
            entropy,
            history,
            stopper,
            signature,
            reason or "completed",
            live,
        )
    return history


def _train(
    net: FlatMLP,
    data: Dataset,
    val: Dataset | None,
    run: _Run,
    optimizer: Optimizer,
    dist: Any,
    runner: Any,
    history: History,
    stopper: _EarlyStopping | None,
    entropy: int,
    first_epoch: int,
    signature: dict[str, Any],
) -> tuple[str | None, int]:
    """The epochs of ``fit``; returns why training ended (a :data:`~flatnet_xp.persistence.FINISH_REASONS`
    entry) and the number of epochs done, counted from the run's start."""
    rank = 0 if dist is None else dist.rank
    bar: _Progress | None = None
    reason = None
    done = first_epoch
    # Overflow on the way to a divergence is reported once, as DivergenceError, not as NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        try:
            bar = _Progress(run.show and rank == 0, run.epochs, first_epoch, runner.n_batches)
            for epoch in range(first_epoch, run.epochs):
                t0 = time.perf_counter()
                order = _order(run.shuffle, entropy, rank, epoch, data.n)
                losses = runner.run(epoch, order, bar)
                history.batch_loss.extend(losses.tolist())
                history.loss.append(float(losses @ runner.batch_sizes) / data.n)
                done = epoch + 1
                reason = _end_of_epoch(net, history, val, run.loss, stopper, optimizer, dist, done)
                history.epoch_time.append(time.perf_counter() - t0)
                bar.end_epoch(history)
                for cb in run.callbacks:
                    if cb(net, history) is True and reason is None:
                        reason = "callback"
                if dist is not None:
                    reason = "callback" if dist.any(reason is not None) and reason is None else reason
                last = reason is not None or epoch + 1 == run.epochs
                if run.checkpoint is not None and rank == 0 and (epoch + 1) % run.checkpoint_every == 0 and not last:
                    from flatnet_xp.persistence import save_checkpoint

                    save_checkpoint(run.checkpoint, net, optimizer, epoch + 1, entropy, history, stopper, signature)
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


def fresh_entropy() -> int:
    """128 bits of OS entropy as an int (the shuffle seed when none is given)."""
    return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]


def _order(shuffle: Any, entropy: int, rank: int, epoch: int, n: int) -> np.ndarray | None:
    """The sample order of ``epoch``: None (data order), drawn from the entropy, or the caller's."""
    if not callable(shuffle):
        return _epoch_order(entropy, rank, epoch, n) if shuffle else None
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


def _epoch_order(entropy: int, rank: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of ``epoch`` on ``rank``, from the shuffle entropy alone.

    Deriving each epoch's permutation (rather than advancing one generator) makes the whole shuffle
    state a single integer, so a resumed run, in any process on any rank, draws the same orders.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(rank, epoch))).permutation(n)


def _end_of_epoch(
    net: FlatMLP,
    history: History,
    val: Dataset | None,
    loss: Loss,
    stopper: _EarlyStopping | None,
    optimizer: Optimizer,
    dist: Any,
    epoch: int,
) -> str | None:
    """Validation metrics, early stopping and plateau schedules for ``epoch`` (counted from 1), just
    finished; returns the reason to stop, or None."""
    monitored = history.loss[-1]
    if val is not None:
        scores = evaluate_dataset(net, val, loss, EVAL_BATCH, r2=not loss.classification)
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
    end_epoch = getattr(optimizer.lr, "end_epoch", None)
    if end_epoch is not None and end_epoch(monitored):
        reason = "schedule"
    if stopper is not None and stopper.update(net, monitored, epoch):
        reason = reason or "early_stopping"
    return reason
