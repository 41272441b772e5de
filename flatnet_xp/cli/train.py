"""``flatnet-xp train``: train a network on a .npz or .csv file and save it as safetensors."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flatnet_xp._compat import BACKENDS
from flatnet_xp.activations import ACTIVATIONS
from flatnet_xp.losses import LOSSES
from flatnet_xp.optim import OPTIMIZERS

__all__ = ["add_train_parser", "load_table", "run_train"]


def load_table(path: str | Path, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets from ``.npz`` (arrays ``X`` and ``y``/``Y``; pickles refused) or ``.csv``.

    A CSV holds numbers separated by commas, optionally under one header row; the target is the
    last column, or the column named (or numbered) by ``target``.

    Raises
    ------
    ValueError
        Unknown extension, missing arrays, non-numeric cells, ragged rows.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                names = set(z.files)
                x_name = "X" if "X" in names else "x" if "x" in names else None
                y_name = next((n for n in ("y", "Y") if n in names), None)
                if x_name is None or y_name is None:
                    raise ValueError(f"--data {p}: expected arrays 'X' and 'y' in the .npz, found {sorted(names)}")
                return z[x_name], z[y_name]
        except ValueError as exc:
            if "--data" in str(exc):
                raise
            raise ValueError(f"--data {p}: not a readable .npz of numeric arrays ({exc})") from None
        except (OSError, EOFError) as exc:
            raise ValueError(f"--data {p}: not a readable .npz file ({exc})") from None
    if suffix == ".csv":
        with open(p, encoding="utf-8") as fh:
            first = fh.readline()
        cells = [c.strip() for c in first.split(",")]
        try:
            [float(c) for c in cells]
            header: list[str] | None = None
        except ValueError:
            header = cells
        try:
            table = np.loadtxt(p, delimiter=",", skiprows=1 if header else 0, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"--data {p}: expected a numeric CSV ({exc})") from None
        col = table.shape[1] - 1
        if target is not None:
            if header and target in header:
                col = header.index(target)
            elif target.lstrip("-").isdigit() and -table.shape[1] <= int(target) < table.shape[1]:
                col = int(target) % table.shape[1]
            else:
                raise ValueError(f"--target {target!r}: not a column of {p} (columns: {header or table.shape[1]})")
        return np.delete(table, col, axis=1), table[:, col]
    raise ValueError(f"--data {p}: expected a .npz or .csv file, got {suffix or 'no extension'!r}")


def _layers(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,32,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two positive sizes like 64,32,10, got {text!r}")
    return sizes


def _number(low: float, high: float, what: str, include_low: bool = False) -> Callable[[str], float]:
    """An argparse type: a float in ``(low, high)``, or ``[low, high)`` with ``include_low``."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not ((low <= v if include_low else low < v) and v < high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    return parse


def add_train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a network on a .npz or .csv file and save it",
        description="Train a FlatMLP on tabular data and save it as one safetensors file. "
        "--layers lists every width, input first (the input width must equal the number of features). "
        "Hidden layers use --activation; the last layer is linear (logits) unless --output-activation says otherwise.",
    )
    p.add_argument("--data", required=True, help=".npz with arrays X and y, or a numeric .csv (target: last column)")
    p.add_argument("--target", default=None, help="CSV target column (header name or index; default: last)")
    p.add_argument("--layers", required=True, type=_layers, help="widths, input first, e.g. 64,32,10")
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="hidden-layer activation")
    p.add_argument("--output-activation", default="identity", choices=sorted(ACTIVATIONS))
    p.add_argument("--loss", default="mse", choices=sorted(LOSSES))
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    p.add_argument(
        "--lr",
        default=1e-3,
        type=_number(0.0, math.inf, "a positive number"),
        help="learning rate (default %(default)s)",
    )
    p.add_argument("--epochs", default=20, type=int, help="default %(default)s")
    p.add_argument("--batch-size", default=32, type=int, help="default %(default)s")
    p.add_argument(
        "--val-split",
        default=0.2,
        type=_number(0.0, 1.0, "a number in [0, 1)", include_low=True),
        help="held-out fraction (default %(default)s)",
    )
    p.add_argument("--patience", default=None, type=int, help="early stopping patience in epochs")
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", default=0, type=int, help="initialisation, split and shuffle seed")
    p.add_argument("--out", default="model.safetensors", help="model file (default %(default)s)")
    p.add_argument("--plot", default=None, help="loss-curve PNG (default: beside --out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Run ``flatnet-xp train``; exit status 2 with a one-line message for bad files or flags."""
    import flatnet_xp as fx

    try:
        X, y = load_table(args.data, args.target)
        if X.ndim != 2 or X.shape[1] != args.layers[0]:
            raise ValueError(
                f"--layers: the first width must be the number of features, {X.shape[1] if X.ndim == 2 else X.shape}, "
                f"got {args.layers[0]}"
            )
        if args.loss == "cross_entropy" and y.ndim == 1:
            y = y.astype(np.int64) if np.all(np.isfinite(y) & (y == np.round(y))) else y
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(X.shape[0])
        n_val = round(args.val_split * X.shape[0])
        val_idx, train_idx = order[:n_val], order[n_val:]
        acts = [args.activation] * (len(args.layers) - 2) + [args.output_activation]
        net = fx.FlatMLP(args.layers, acts, backend=args.backend, dtype=args.dtype, seed=args.seed, device=args.device)
        opt = OPTIMIZERS[args.optimizer](lr=args.lr)
        hist = net.fit(
            X[train_idx],
            y[train_idx],
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=opt,
            loss=args.loss,
            seed=args.seed,
            validation_data=(X[val_idx], y[val_idx]) if n_val else None,
            patience=args.patience,
            progress=False if args.no_progress else None,
        )
        net.save(args.out)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as exc:
        print(f"flatnet-xp train: error: {exc}", file=sys.stderr)
        return 2
    summary = f"trained {net} for {hist.epochs} epochs: training loss {hist.loss[-1]:.6g}"
    if hist.val_loss:
        summary += f", validation loss {hist.val_loss[-1]:.6g}"
    if hist.val_accuracy:
        summary += f", validation accuracy {hist.val_accuracy[-1]:.4f}"
    print(summary)
    print(f"model written to {args.out}")
    plot = args.plot or str(Path(args.out).with_suffix(".png"))
    try:
        fig = hist.plot(log_scale=True)
    except ImportError:
        print("(matplotlib is not installed: no loss-curve PNG)")
    else:
        from flatnet_xp._atomic import save_figure

        save_figure(fig, plot, dpi=110)
        print(f"loss curve written to {plot}")
    return 0
