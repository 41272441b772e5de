"""Pieces of ``flatnet-xp train``: the validation split, the per-epoch lines, checks of the column flags."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from flatnet_xp.cli._common import CliError, have_module
from flatnet_xp.losses import LOSSES

__all__ = ["EpochLines", "check_column_flags", "epochs_text", "shown", "split_indices", "task_and_loss", "use_bars"]

_TASK_OF_LOSS = {name: "classify" if loss.classification else "regress" for name, loss in LOSSES.items()}


def split_indices(y: np.ndarray, stratify: bool, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Training and validation row indices (sorted) and whether the split is stratified.

    ``round(val_split * n)`` rows (at most n - 1) go to validation. Stratified: they are shared out
    between the classes in proportion to their sizes (largest remainders first), every class
    keeping at least one training row, as scikit-learn's StratifiedShuffleSplit does.
    """
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    n_val = min(round(val_split * n), n - 1)
    if n_val <= 0:
        return np.arange(n), np.arange(0), False
    if not stratify:
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val]), False
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = counts * (n_val / n)
    cap = counts - 1
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    for k in np.argsort(-(quota - take), kind="stable"):
        if take.sum() >= n_val:
            break
        if take[k] < cap[k]:
            take[k] += 1
    inverse = inverse.reshape(-1)
    val = np.concatenate([rng.permutation(np.flatnonzero(inverse == k))[: take[k]] for k in range(classes.shape[0])])
    val = np.sort(val)
    return np.setdiff1d(np.arange(n), val), val, True


def shown(names: tuple[str, ...], limit: int = 10) -> str:
    text = ", ".join(repr(n) for n in names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def task_and_loss(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The task asked for (by --task, or implied by --loss), and the loss asked for; conflicts refused."""
    task, loss = args.task, args.loss
    if loss is not None and task is not None and _TASK_OF_LOSS[loss] != task:
        kind = "a classification" if _TASK_OF_LOSS[loss] == "classify" else "a regression"
        raise CliError(f"--loss {loss} is {kind} loss, but --task {task} was given")
    return task or (None if loss is None else _TASK_OF_LOSS[loss]), loss


class EpochLines:
    """The per-epoch callback: one plain line per epoch (through tqdm.write when bars are shown)."""

    def __init__(self, epochs: int, val: tuple[np.ndarray, np.ndarray] | None, loss: str, bars: bool, quiet: bool):
        self.epochs, self.val, self.loss, self.quiet = epochs, val, loss, quiet
        self.metric_name = "val_accuracy" if loss in ("cross_entropy", "bce") else "val_r2"
        self.metric: list[float] = []
        self.write = print
        if bars:
            from tqdm.auto import tqdm

            self.write = tqdm.write

    def __call__(self, net: Any, history: Any) -> None:
        parts = [f"loss {history.loss[-1]:.6g}"]
        if self.val is not None:
            self.metric.append(history.val_score[-1])  # accuracy or R^2, computed by fit
            parts += [f"val_loss {history.val_loss[-1]:.6g}", f"{self.metric_name} {self.metric[-1]:.4f}"]
        parts.append(f"{history.epoch_time[-1]:.2f} s")
        if not self.quiet:
            self.write(f"epoch {history.epochs}/{self.epochs}: " + ", ".join(parts))


def epochs_text(asked: int | None, epochs: int, patience: int | None) -> str:
    if asked is None and patience is not None:
        return f"up to {epochs} epochs (early stopping, patience {patience})"
    return f"{epochs} epochs" + (f" (early stopping, patience {patience})" if patience else "")


def check_column_flags(args: argparse.Namespace, table: Any) -> None:
    """--drop and --features name columns of the table (not the target), and not both the same one."""
    import difflib

    names = list(table.feature_names)
    for flag, cols in (("--drop", args.drop), ("--features", args.features)):
        if cols is None:
            continue
        if table.frame is None:
            raise CliError(f"{flag}: only for table files (a .npz has no named columns to choose)")
        for c in cols:
            if c == table.target_name:
                raise CliError(f"{flag} {c}: that is the target column")
            if c not in names:
                close = difflib.get_close_matches(c, names, n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(repr(m) for m in close)}?" if close else ""
                raise CliError(
                    f"{flag} {c}: not a column of {args.data}{hint} ({len(names)} columns: {shown(tuple(names))})"
                )
    both = set(args.drop or ()) & set(args.features or ())
    if both:
        raise CliError(f"--drop and --features both name {sorted(both)[0]!r}")


def use_bars(args: argparse.Namespace) -> bool:
    return not (args.no_progress or args.quiet) and sys.stderr.isatty() and have_module("tqdm")
