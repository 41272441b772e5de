"""Checkpoints of a run: what defines it (its signature), writing one, and continuing from one.

A checkpoint is a model file (:mod:`flatnet_xp.persistence`) that also holds the optimizer state,
the epoch, the shuffle state, the early-stopping state, the history and the run's signature, so
that a resume continues the same run bit-identically or refuses, naming every difference.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp.backends import to_numpy
from flatnet_xp.history import History
from flatnet_xp.optim import Optimizer
from flatnet_xp.params import FlatParams
from flatnet_xp.persistence import Checkpoint, read_checkpoint, write_file
from flatnet_xp.schedules import plateau_of
from flatnet_xp.training.run import RunSpec
from flatnet_xp.training.stopping import EarlyStopping

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset

__all__ = ["finite_host_params", "fingerprint", "read_resume", "restore", "run_signature", "save_checkpoint"]


def fingerprint(data: Dataset | None) -> dict[str, Any] | None:
    """Shape, dtype and BLAKE2b hash of a dataset's X, Y and sample weights, hashed in chunks
    of rows (no full copy; GPU arrays are copied to the host one chunk at a time)."""
    if data is None:
        return None
    out: dict[str, Any] = {}
    for name, arr in (("X", data.X), ("Y", data.Y), ("sample_weight", data.sample_weight)):
        if arr is None:
            continue
        h = hashlib.blake2b(digest_size=16)
        n = int(arr.shape[0])
        per_row = max(1, int(np.prod(arr.shape[1:])))
        step = max(1, (1 << 20) // per_row)
        for lo in range(0, n, step):
            h.update(np.ascontiguousarray(data.host_rows(arr, slice(lo, min(lo + step, n)))).tobytes())
        out[name] = {
            "shape": [int(s) for s in arr.shape],
            "dtype": str(arr.dtype).rsplit(".", 1)[-1],
            "blake2b": h.hexdigest(),
        }
    return out


def run_signature(params: FlatParams, run: RunSpec, data: Dataset, val: Dataset | None, dist: Any) -> dict[str, Any]:
    """What defines a run: a resume must match all of it (see ``fit``'s ``resume``). Data-parallel:
    every rank's shard, in rank order."""
    shards: tuple[Any, Any] = (fingerprint(data), fingerprint(val))
    if dist is not None:
        everyone = dist.comm.allgather(shards)
        shards = {f"rank{r}": s[0] for r, s in enumerate(everyone)}, {f"rank{r}": s[1] for r, s in enumerate(everyone)}
    return {
        "layer_sizes": list(params.layout.sizes),
        "activations": list(params.activations),
        "dtype": params.dtype_name,
        **run.settings(),
        "seed": run.seed,
        "data": shards[0],
        "validation": shards[1],
    }


def read_resume(run: RunSpec, signature: dict[str, Any]) -> Checkpoint:
    """The checkpoint to resume, refused (ValueError naming every difference) unless it is this run's."""
    assert run.resume is not None
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


def finite_host_params(params: FlatParams, what: str) -> dict[str, np.ndarray]:
    """``{"w", "b"}`` as NumPy copies, refusing parameters that are not all finite (a file ``load``
    would reject)."""
    flat = params.host()
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{what}: the network's parameters are not all finite; refusing to write a file load rejects")
    w_len = params.layout.w_len
    return {"w": flat[:w_len], "b": flat[w_len:]}


def save_checkpoint(
    path: str | os.PathLike[str],
    params: FlatParams,
    model_meta: dict[str, Any],
    optimizer: Optimizer,
    epoch: int,
    shuffle_entropy: int,
    history: History,
    stopper: EarlyStopping | None,
    signature: dict[str, Any],
    finished: str | None = None,
    live_params: Any = None,
) -> None:
    """Write model + optimizer state + epoch + shuffle state + history + run signature, atomically.

    ``model_meta`` is the network's part of the metadata (:func:`flatnet_xp.persistence.model_meta`).
    The shuffle state is the entropy from which ``fit`` derives every epoch's order
    (``SeedSequence(entropy, spawn_key=(rank, epoch))``), so it is complete for every rank.
    ``finished`` marks the checkpoint ``fit`` writes last (its model is what ``fit`` returned);
    ``live_params`` are the parameters to continue from when they differ from the model (the
    best weights were restored at the end of a completed run).
    """
    tensors = finite_host_params(params, "checkpoint")
    state = optimizer.state_of(params)
    for name, buf in state.buffers.items():
        tensors[f"opt.{name}"] = np.array(to_numpy(buf))
    if live_params is not None:
        tensors["live.params"] = np.array(to_numpy(live_params))
    hist = history.to_dict()
    tensors["history.batch_loss"] = np.asarray(hist.pop("batch_loss"), dtype=np.float64)
    meta = model_meta | {
        "kind": "checkpoint",
        "epoch": epoch,
        "optimizer": {
            "name": optimizer.name,
            "t": state.t,
            "hyperparameters": optimizer.hyperparameters(),
            "buffers": list(optimizer.buffer_names),
        },
        "shuffle": {"entropy": int(shuffle_entropy), "scheme": "SeedSequence(entropy, spawn_key=(rank, epoch))"},
        "history": hist,
        "n_batch_loss": int(tensors["history.batch_loss"].shape[0]),
        "finished": finished,
        "live": live_params is not None,
        "run": signature,
        "schedule_state": None if (plateau := plateau_of(optimizer.lr)) is None else plateau.state(),
    }
    if stopper is not None:
        tensors["early.best_params"] = np.array(to_numpy(stopper.best_params.flat))
        meta["early_stopping"] = {
            "best": stopper.best if np.isfinite(stopper.best) else None,
            "best_epoch": stopper.best_epoch,
            "wait": stopper.wait,
        }
    write_file(path, tensors, meta, "checkpoint")


def restore(ckpt: Checkpoint, params: FlatParams, optimizer: Optimizer, stopper: EarlyStopping | None) -> None:
    """Put the checkpoint's parameters (the live ones of a finished run), optimizer state and
    early-stopping state into ``params`` (which owns the optimizer state) and ``stopper``."""
    t, meta, be = ckpt.tensors, ckpt.meta, params.backend
    flat = t["live.params"] if meta["live"] else np.concatenate([t["w"], t["b"]])
    params.assign(be.asarray(flat, dtype=params.dtype))
    state = optimizer.state_of(params)
    state.buffers = {
        name: be.assign(state.buffers[name], be.asarray(t[f"opt.{name}"], dtype=params.dtype))
        for name in optimizer.buffer_names
    }
    state.t = int(meta["optimizer"]["t"])
    plateau = plateau_of(optimizer.lr)
    if meta.get("schedule_state") is not None and plateau is not None:
        plateau.load_state(meta["schedule_state"])
    early = meta.get("early_stopping")
    if stopper is not None and early is not None:
        best = be.asarray(t["early.best_params"], dtype=params.dtype)
        stopper.best_params.flat = be.assign(stopper.best_params.flat, best)
        stopper.best = math.inf if early["best"] is None else float(early["best"])
        stopper.best_epoch, stopper.wait = early["best_epoch"], early["wait"]


def restore_model(ckpt: Checkpoint, params: FlatParams) -> None:
    """The model ``fit`` returned (a finished run's final weights)."""
    flat = np.concatenate([ckpt.tensors["w"], ckpt.tensors["b"]])
    params.assign(params.backend.asarray(flat, dtype=params.dtype))
