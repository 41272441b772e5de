"""Checkpoints of an ensemble's ``fit``: ONE safetensors file (kind ``"ensemble_checkpoint"``) with
everything the run needs to go on exactly where it was.

Tensors: the live parameters ``w``/``b`` ``(E, ...)``, each optimizer slot ``opt.<name>``
``(E, n_params)`` and, with early stopping, the members' best rows ``best.params``. Metadata: the
model's (layer sizes, activations, dtype, loss), ``n_models``, the epochs done, the update count,
the shuffle entropies, the run's settings (compared on resume: a different run is refused, naming
what differs), each member's history, early-stopping state, frozen mask and divergences. Written
atomically after every ``checkpoint_every`` epochs and at the end; a finished run's checkpoint
gives back exactly what its ``fit`` returned.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flatnet_xp import persistence
from flatnet_xp.backends import to_numpy
from flatnet_xp.history import History

__all__ = ["RunState", "read_checkpoint", "restore", "write_checkpoint"]


@dataclass
class RunState:
    """Per-member bookkeeping of one ``fit`` (histories, early stopping, frozen and diverged members)."""

    histories: list[History]
    best: np.ndarray
    best_epoch: np.ndarray
    wait: np.ndarray
    stopped: np.ndarray
    diverged: dict[int, int] = field(default_factory=dict)
    best_flat: Any = None
    epoch: int = 0
    finished: bool = False

    @classmethod
    def fresh(cls, n_models: int) -> RunState:
        return cls(
            [History() for _ in range(n_models)],
            np.full(n_models, math.inf),
            np.zeros(n_models, dtype=np.int64),
            np.zeros(n_models, dtype=np.int64),
            np.zeros(n_models, dtype=bool),
        )


def write_checkpoint(
    path: str | os.PathLike[str], ens: Any, tr: Any, st: RunState, settings: dict[str, Any], entropies: list[int]
) -> None:
    """Write the run's state after ``st.epoch`` epochs to ``path`` (atomically)."""
    lay = ens.layout
    host = np.asarray(to_numpy(ens._flat)).astype(ens.dtype_name)
    meta = persistence.model_meta("ensemble_checkpoint", lay.sizes, ens.activations, ens.dtype_name, None, None)
    meta.update(
        n_models=ens.n_models,
        epoch=st.epoch,
        finished=st.finished,
        t=tr.t,
        entropies=[str(x) for x in entropies],
        settings=settings,
        optimizer_buffers=list(tr.buffers),
        has_best=st.best_flat is not None,
        histories=[h.to_dict() for h in st.histories],
        best=[None if not math.isfinite(b) else float(b) for b in st.best.tolist()],
        best_epoch=st.best_epoch.tolist(),
        wait=st.wait.tolist(),
        stopped=st.stopped.tolist(),
        active=tr.active.tolist(),
        diverged={str(k): v for k, v in st.diverged.items()},
    )
    tensors = {"w": host[:, : lay.w_len], "b": host[:, lay.w_len :]}
    for name, buf in tr.buffers.items():
        tensors[f"opt.{name}"] = np.asarray(to_numpy(buf)).astype(ens.dtype_name)
    if st.best_flat is not None:
        tensors["best.params"] = np.asarray(to_numpy(st.best_flat)).astype(ens.dtype_name)
    persistence.write_file(path, tensors, meta, "checkpoint")


def _bad(path: Any, why: str) -> persistence.ModelFileError:
    return persistence.ModelFileError(f"{path}: not a valid flatnet_xp ensemble checkpoint: {why}")


def read_checkpoint(
    path: str | os.PathLike[str], ens: Any, settings: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The validated metadata and tensors of a checkpoint of this ensemble's run.

    Raises
    ------
    flatnet_xp.ModelFileError
        Not an intact ensemble checkpoint.
    ValueError
        A checkpoint of another ensemble or another run (named ``resume``, listing what differs).
    """
    meta, tensors = persistence.read_file(path, kinds=("ensemble_checkpoint",))
    e = ens.n_models
    ours = (list(ens.layout.sizes), list(ens.activations), ens.dtype_name, e)
    theirs = (meta["layer_sizes"], meta["activations"], meta["dtype"], meta["n_models"])
    if ours != theirs:
        raise ValueError(f"resume: the checkpoint is of an ensemble {theirs}, this one is {ours}")
    saved = meta.get("settings")
    if not isinstance(saved, dict):
        raise _bad(path, "no run settings")
    differ = sorted(k for k in set(settings) | set(saved) if settings.get(k) != saved.get(k))
    if differ:
        raise ValueError(f"resume: the checkpoint was written by a different run; these settings differ: {differ}")
    try:
        ok = (
            type(meta["epoch"]) is int and meta["epoch"] >= 0 and type(meta["t"]) is int and meta["t"] >= 0
            and isinstance(meta["finished"], bool)
            and len(meta["entropies"]) == e and all(isinstance(x, str) and x.isdigit() for x in meta["entropies"])
            and all(len(meta[k]) == e for k in ("histories", "best", "best_epoch", "wait", "stopped", "active"))
            and all(type(x) is int and x >= 0 for x in meta["best_epoch"] + meta["wait"])
            and all(isinstance(x, bool) for x in meta["stopped"] + meta["active"])
            and all(x is None or type(x) in (int, float) for x in meta["best"])
            and isinstance(meta["diverged"], dict)
            and all(k.isdigit() and int(k) < e and type(v) is int for k, v in meta["diverged"].items())
        )  # fmt: skip
        histories = [History.from_dict(h) for h in meta["histories"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(path, f"malformed run state ({exc})") from None
    if not ok:
        raise _bad(path, "malformed run state")
    meta["histories"] = histories
    return meta, tensors


def restore(meta: dict[str, Any], tensors: dict[str, np.ndarray], ens: Any, tr: Any) -> tuple[RunState, list[int]]:
    """Put a checkpoint's state into the ensemble and its trainer; returns the run state and entropies."""
    be, dtype = ens._backend, ens._dtype
    ens._flat = be.assign(ens._flat, be.asarray(np.concatenate([tensors["w"], tensors["b"]], axis=1), dtype=dtype))
    for name in list(tr.buffers):
        if f"opt.{name}" in tensors:
            tr.buffers[name] = be.assign(tr.buffers[name], be.asarray(tensors[f"opt.{name}"], dtype=dtype))
    tr.t = meta["t"]
    tr.active = np.array(meta["active"], dtype=bool)
    st = RunState(
        meta["histories"],
        np.array([math.inf if b is None else float(b) for b in meta["best"]]),
        np.array(meta["best_epoch"], dtype=np.int64),
        np.array(meta["wait"], dtype=np.int64),
        np.array(meta["stopped"], dtype=bool),
        {int(k): v for k, v in meta["diverged"].items()},
        be.asarray(tensors["best.params"], dtype=dtype) if "best.params" in tensors else None,
        meta["epoch"],
        meta["finished"],
    )
    return st, [int(x) for x in meta["entropies"]]
