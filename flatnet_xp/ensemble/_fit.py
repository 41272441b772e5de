"""``FlatEnsemble.fit``: every member trained in the same steps, on ``(E, n_params)`` buffers.

Each step gathers the batch once (shared by every member, broadcast; or one per member when they
have their own shuffle seeds or bootstrap resamples), runs the batched forward and backward passes
of :mod:`._math` and ONE optimizer update over the stacked buffers (:mod:`._optim`). Member ``i``'s
numbers are exactly those of a :class:`~flatnet_xp.FlatMLP` trained alone with its seed, order
and hyperparameters (to rounding of the batched kernels).

Per member, at each epoch's end: its losses and parameters are checked (a member that diverged is
put back to the start of that epoch and frozen, named in a :class:`RuntimeWarning` and in
``diverged_``; the others go on); early stopping keeps its best row and freezes it when its
patience runs out. A frozen member's learning rate is 0, so its parameters stay exactly as they are.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp._atomic import check_output_path
from flatnet_xp._data import Dataset
from flatnet_xp._memory import SMALL_FIT_BYTES, available_memory
from flatnet_xp._random import epoch_order, fresh_entropy
from flatnet_xp._validation import check_int, check_real, describe
from flatnet_xp.backends import to_numpy
from flatnet_xp.engines.plan import BatchPlan
from flatnet_xp.ensemble import _math as M
from flatnet_xp.ensemble._checkpoint import RunState, read_checkpoint, restore, write_checkpoint
from flatnet_xp.ensemble._compiled import CompiledEnsembleEpochs
from flatnet_xp.ensemble._optim import MemberOptimizers
from flatnet_xp.ensemble._steps import Trainer, host_targets
from flatnet_xp.history import DivergenceError, History
from flatnet_xp.losses import Loss, get_loss
from flatnet_xp.training.progress import Progress
from flatnet_xp.training.run import _check_callbacks, progress_wanted

__all__ = ["check_memory", "fit_ensemble", "host_targets"]


def check_memory(n_models: int, n_params: int, dtype_name: str, copies: int, activations: int, on_gpu: bool,
                 name: str) -> None:  # fmt: skip
    """Refuse, before allocating, ``copies`` ``(E, n_params)`` buffers and ``activations`` floats that
    this machine cannot hold (named ``name``; small requests and GPUs are not checked)."""
    need = (copies * n_models * n_params + activations) * np.dtype(dtype_name).itemsize
    have = None if need < SMALL_FIT_BYTES or on_gpu else available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{name}: {n_models} members of {n_params:,} parameters need about {need:,} bytes of {dtype_name} "
            f"buffers ({copies} of shape (E, n_params) and the activations); this machine has {have:,} bytes "
            "available: use fewer members, a smaller network or batch"
        )


def _check_seeds(seed: Any, n_models: int) -> int | list[int] | None:
    if seed is None:
        return None
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        seeds = list(seed)
        if len(seeds) != n_models:
            raise ValueError(f"seed: expected an int or {n_models} ints (one per member), got {len(seeds)} values")
        return [check_int("seed", s, 0) for s in seeds]
    return check_int("seed", seed, 0)


def fit_ensemble(
    ens: Any,
    X: Any,
    Y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: Any = None,
    loss: str | Loss = "mse",
    sample_weight: Any = None,
    shuffle: bool = True,
    seed: Any = None,
    validation_data: Any = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    callbacks: Any = None,
    progress: bool | None = None,
    bootstrap: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike[str] | None = None,
) -> list[History]:
    """Train every member (see :meth:`flatnet_xp.FlatEnsemble.fit`); returns one History per member."""
    e = ens.n_models
    epochs = check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    loss_fn = get_loss(loss)
    M.check_loss(loss_fn)
    opts = MemberOptimizers.build(optimizer, e)
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle: expected a bool, got {describe(shuffle)}")
    if not isinstance(bootstrap, bool):
        raise TypeError(f"bootstrap: expected a bool, got {describe(bootstrap)}")
    seeds = _check_seeds(seed, e)
    patience = None if patience is None else check_int("patience", patience, 1)
    min_delta = check_real("min_delta", min_delta, minimum=0.0)
    cbs = _check_callbacks(callbacks)
    show = progress_wanted(progress)
    sizes = ens.layout.sizes
    data = Dataset(ens._backend, ens.dtype_name, X, Y, sizes[0], sizes[-1], loss_fn, sample_weight=sample_weight)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
            raise TypeError(
                "validation_data: expected (X_val, Y_val) or (X_val, Y_val, sample_weight_val), "
                f"got {describe(validation_data)}"
            )
        val = Dataset(
            ens._backend, ens.dtype_name, validation_data[0], validation_data[1], sizes[0], sizes[-1], loss_fn,
            sample_weight=validation_data[2] if len(validation_data) == 3 else None,
            names=("X_val", "Y_val", "sample_weight_val"),
        )  # fmt: skip
    plan = BatchPlan(data.n, batch_size)
    # gradient, scratch, optimizer slots with their epoch snapshot, the parameters' snapshot, the best rows
    state = len(opts.buffer_names)
    copies = 3 + 2 * state + (patience is not None)
    acts = 2 * e * plan.batch_size * sum(sizes) * (2 if plan.last_size != plan.batch_size else 1)
    check_memory(e, ens.layout.n_params, ens.dtype_name, copies, acts, ens._backend.is_gpu, "n_models")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    if checkpoint is not None:
        check_output_path(checkpoint, "checkpoint")
    if resume is not None and not isinstance(resume, str | os.PathLike):
        raise TypeError(f"resume: expected a file path (str or os.PathLike), got {describe(resume)}")
    settings = {
        "loss": [loss_fn.name, loss_fn.scale],
        "optimizer": [type(opts.members[0]).__name__, [_plain(o.hyperparameters()) for o in opts.members]],
        "batch_size": batch_size, "shuffle": shuffle, "bootstrap": bootstrap, "patience": patience,
        "min_delta": min_delta, "rows": data.n, "validation_rows": None if val is None else val.n,
    }  # fmt: skip
    # Shuffle entropy: one shared (members see the same order) or one per member.
    if isinstance(seeds, list):
        entropies: list[int] = seeds
    else:
        shared = seeds if seeds is not None else (fresh_entropy() if shuffle or bootstrap else 0)
        entropies = [shared] * e
    files = _Files(checkpoint, checkpoint_every, settings, None)
    if resume is not None:
        files.resumed = read_checkpoint(resume, ens, settings)
        if seeds is not None and [int(x) for x in files.resumed[0]["entropies"]] != entropies:
            raise ValueError("seed: differs from the checkpoint's shuffle seeds (pass the same, or none, to resume)")
    with ens._backend.precision(ens.dtype_name), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _run(ens, data, val, loss_fn, opts, plan, epochs, shuffle, entropies, bootstrap, patience,
                    min_delta, cbs, show, files)  # fmt: skip


@dataclass
class _Files:
    """Where the run writes its checkpoints and what it resumes from."""

    path: str | os.PathLike[str] | None
    every: int
    settings: dict[str, Any]
    resumed: tuple[dict[str, Any], dict[str, np.ndarray]] | None


def _plain(value: Any) -> Any:
    """JSON-comparable form of hyperparameters (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _orders(shuffle: bool, entropies: list[int], per_member: bool, boot: np.ndarray | None, epoch: int,
            n: int) -> np.ndarray | None:  # fmt: skip
    if not per_member:
        return epoch_order(entropies[0], 0, epoch, n) if shuffle else None
    cache: dict[int, np.ndarray] = {}
    rows = []
    for i, ent in enumerate(entropies):
        if shuffle:
            if ent not in cache:
                cache[ent] = epoch_order(ent, 0, epoch, n)
            order = cache[ent]
        else:
            order = np.arange(n)
        rows.append(order if boot is None else boot[i][order])
    return np.stack(rows)


def _run(ens: Any, data: Dataset, val: Dataset | None, loss: Loss, opts: MemberOptimizers, plan: BatchPlan,
         epochs: int, shuffle: bool, entropies: list[int], bootstrap: bool, patience: int | None, min_delta: float,
         cbs: tuple[Any, ...], show: bool, files: _Files) -> list[History]:  # fmt: skip
    e = ens.n_models
    tr = Trainer(ens, data, val, loss, opts, plan)
    st = RunState.fresh(e)
    if patience is not None:
        st.best_flat = ens._backend.copy(ens._flat)
    if files.resumed is not None:
        st, entropies = restore(*files.resumed, ens, tr)
    per_member = bootstrap or (shuffle and len(set(entropies)) > 1)
    boot = None
    if bootstrap:
        boot = np.stack(
            [
                np.random.default_rng(np.random.SeedSequence(ent, spawn_key=(2**32 + i,))).integers(0, data.n, data.n)
                for i, ent in enumerate(entropies)
            ]
        )
    histories = st.histories
    yv, swv = host_targets(val) if val is not None else (None, None)
    snap: tuple[Any, dict[str, Any]] | None = None
    compiled = None if ens._backend.mutable or st.finished else _compiled_runner(tr)
    bar = Progress(show, epochs, st.epoch, plan.n_batches)
    mean_history = History()
    try:
        for epoch in range(st.epoch, epochs if not st.finished else st.epoch):
            t0 = time.perf_counter()
            was_active = tr.active.copy()
            snap = tr.snapshot(snap)
            order = _orders(shuffle, entropies, per_member, boot, epoch, plan.n)
            bar.start_epoch(epoch)
            if compiled is not None:
                losses = compiled(order)
            else:
                losses = np.zeros((plan.n_batches, e))
                dev = tr.xp.zeros((plan.n_batches, e), dtype=tr.xp.float64, device=tr.be.device)
                for step in range(plan.n_batches):
                    rows = plan.rows(step, order if order is None or order.ndim == 1 else None)
                    if order is not None and order.ndim == 2:
                        lo = step * plan.batch_size
                        rows = order[:, lo : lo + plan.batch_size]
                    x, y, sw = tr.batch(rows)
                    dev[step, :] = tr.xp.astype(tr.step(x, y, sw), tr.xp.float64)
                    if bar.enabled and step % bar.stride == 0:
                        bar.batches(step + 1, None)
                losses[:] = np.asarray(to_numpy(dev), dtype=np.float64)
            finite = np.isfinite(losses).all(axis=0) & tr.finite_rows()
            bad = was_active & ~finite
            if bad.any():
                tr.restore_rows(snap, bad)
                tr.active &= ~bad
                for m in np.flatnonzero(bad).tolist():
                    st.diverged[m] = epoch + 1
                names = ", ".join(str(int(i)) for i in np.flatnonzero(bad))
                warnings.warn(
                    f"member(s) {names} diverged (non-finite loss, gradient or update) at epoch {epoch + 1}: "
                    "their parameters and optimizer state were restored to the start of that epoch and they are "
                    "frozen; the other members go on (see diverged_)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                if not tr.active.any() and not st.stopped.any():
                    ens._opt_state = (opts.key(), tr.t, tr.buffers)
                    ens.diverged_ = st.diverged
                    raise DivergenceError(
                        f"every member diverged by epoch {epoch + 1}; each was restored to the start of the epoch "
                        "in which it diverged: lower the learning rate or set clip_norm",
                        epoch + 1,
                        None,
                    )
            monitored = np.array([plan.epoch_loss(losses[:, i]) for i in range(e)])
            if val is not None:
                assert yv is not None
                v_loss, v_acc, v_score = tr.validate(yv, swv)
                monitored = v_loss
            for m in np.flatnonzero(was_active).tolist():
                h = histories[m]
                h.batch_loss.extend(losses[:, m].tolist())
                h.loss.append(plan.epoch_loss(losses[:, m]))
                if val is not None:
                    h.val_loss.append(float(v_loss[m]))
                    h.val_score.append(float(v_score[m]))
                    if v_acc is not None:
                        h.val_accuracy.append(float(v_acc[m]))
                h.epoch_time.append(time.perf_counter() - t0)
            if patience is not None:
                _early_stopping(ens, tr, st, monitored, epoch, patience, min_delta)
            active_losses = [histories[i].loss[-1] for i in np.flatnonzero(was_active)]
            mean_history.loss.append(float(np.mean(active_losses)) if active_losses else math.nan)
            bar.end_epoch(mean_history)
            st.epoch = epoch + 1
            reason = not tr.active.any()
            for cb in cbs:
                if cb(ens, histories) is True:
                    reason = True
            st.finished = bool(reason)
            if files.path is not None and (reason or st.epoch % files.every == 0) and st.epoch < epochs:
                write_checkpoint(files.path, ens, tr, st, files.settings, entropies)
            if reason:
                break
    finally:
        bar.close()
        ens._opt_state = (opts.key(), tr.t, tr.buffers)
    if files.path is not None:  # the last checkpoint: the live state, from which this end is rebuilt on resume
        write_checkpoint(files.path, ens, tr, st, files.settings, entropies)
    if patience is not None:
        assert st.best_flat is not None
        keep = (st.best_epoch > 0) & ~st.stopped & np.array([i not in st.diverged for i in range(e)])
        if keep.any():
            ens._flat = tr.copy_rows(ens._flat, st.best_flat, keep)
        for i in range(e):
            histories[i].best_epoch = int(st.best_epoch[i]) if st.best_epoch[i] > 0 else None
    for i in range(e):
        done = histories[i].epochs < epochs and i not in st.diverged
        histories[i].stopped_early = bool(st.stopped[i]) or done
    ens.diverged_ = st.diverged
    return histories


def _early_stopping(ens: Any, tr: Trainer, st: RunState, monitored: np.ndarray, epoch: int, patience: int,
                    min_delta: float) -> None:  # fmt: skip
    """Record each active member's monitored loss; a member out of patience gets its best row and is frozen."""
    assert st.best_flat is not None
    improved = tr.active & (monitored < st.best - min_delta)
    st.best = np.where(improved, monitored, st.best)
    st.best_epoch = np.where(improved, epoch + 1, st.best_epoch)
    st.wait = np.where(improved, 0, st.wait + 1)
    if improved.any():
        st.best_flat = tr.copy_rows(st.best_flat, ens._flat, improved)
    stop = tr.active & (st.wait >= patience)
    if stop.any():
        ens._flat = tr.copy_rows(ens._flat, st.best_flat, stop & (st.best_epoch > 0))
        st.stopped |= stop
        tr.active &= ~stop


def _compiled_runner(tr: Trainer) -> Any:
    return CompiledEnsembleEpochs(tr)
