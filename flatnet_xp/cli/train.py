"""``flatnet-xp train``: train a network on a CSV or ``.npz`` table and save it with its preprocessing."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from flatnet_xp.activations import ACTIVATIONS
from flatnet_xp.backends import BACKENDS
from flatnet_xp.cli._common import (
    CliError,
    check_backend,
    check_output,
    have_module,
    int_at_least,
    number_in,
    refuse_same_file,
    strict_int,
)
from flatnet_xp.cli._train_parts import (
    EpochLines,
    check_column_flags,
    epochs_text,
    shown,
    split_indices,
    task_and_loss,
    use_bars,
)
from flatnet_xp.losses import LOSSES
from flatnet_xp.optim import OPTIMIZERS

__all__ = ["add_parser", "run", "split_indices"]

#: Without --epochs: train at most this many epochs, stopping early on the validation loss ...
MAX_EPOCHS = 1000
#: ... and at most this many training rows' passes in all (fewer epochs on large tables).
MAX_ROW_PASSES = 2_000_000
#: Without --epochs and --patience: epochs without improvement before stopping.
DEFAULT_PATIENCE = 10
#: Without --epochs and without validation rows (--val-split 0): this many epochs.
NO_VAL_EPOCHS = 100


def _widths(text: str, *, minimum_count: int) -> list[int]:
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,32, got an empty one in {text!r}")
    try:
        sizes = [strict_int(s) for s in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,32, got {text!r}") from None
    if len(sizes) < minimum_count or any(s < 1 for s in sizes):
        example = "64,32,10" if minimum_count > 1 else "64,32"
        need = f"at least {minimum_count} " if minimum_count > 1 else ""
        raise argparse.ArgumentTypeError(f"expected {need}positive sizes like {example}, got {text!r}")
    return sizes


def _layers(text: str) -> list[int]:
    return _widths(text, minimum_count=2)


def _hidden(text: str) -> list[int]:
    if text.strip().lower() in ("none", ""):
        return []
    return _widths(text, minimum_count=1)


def _column_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names like a,b, got {text!r}")
    return names


_column_list.__name__ = "column names"
_layers.__name__ = "layer sizes"
_hidden.__name__ = "hidden sizes"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a network on a CSV or .npz table and save it (with its preprocessing)",
        description="Train a FlatMLP on a table and save it as ONE safetensors file that also holds the "
        "preprocessing, so that `flatnet-xp predict` needs nothing else. Each column's role is decided on "
        "the training rows and printed first: numeric (missing cells: median + indicator), categorical "
        "(one-hot; rare levels grouped, unseen ones all zeros), date (days, year, month, weekday), or "
        "dropped (id, constant, empty, free text; --drop, --features override). The task (classification "
        "or regression) is inferred from the target column as scikit-learn's type_of_target does. Input "
        "and output widths come from the data. Without --epochs, training stops early on the validation "
        "rows and keeps the best weights. Hidden layers use --activation; the last layer is linear (logits) "
        "unless --output-activation says otherwise.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="a table (.csv .tsv .txt .dat, also .gz; delimiter, header, encoding detected) or .npz with X and y",
    )
    p.add_argument("--target", default=None, help="CSV target column: header name or index (default: the last)")
    p.add_argument(
        "--drop",
        default=None,
        type=_column_list,
        metavar="COLS",
        help="comma-separated columns to leave out (besides those dropped automatically)",
    )
    p.add_argument(
        "--features",
        default=None,
        type=_column_list,
        metavar="COLS",
        help="comma-separated columns to use, and only these (overrides the automatic drops)",
    )
    arch = p.add_mutually_exclusive_group()
    arch.add_argument(
        "--hidden",
        default=None,
        type=_hidden,
        help="hidden widths, e.g. 64,32 ('none' for no hidden layer; default 64)",
    )
    arch.add_argument(
        "--layers",
        default=None,
        type=_layers,
        help="every width, input first, e.g. 8,64,3 (must match the data)",
    )
    p.add_argument(
        "--task",
        default=None,
        choices=["classify", "regress"],
        help="override the inferred task",
    )
    p.add_argument(
        "--loss",
        default=None,
        choices=sorted(LOSSES),
        help="default: cross_entropy (classify) or mse (regress)",
    )
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="hidden-layer activation")
    p.add_argument("--output-activation", default="identity", choices=sorted(ACTIVATIONS))
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    p.add_argument("--lr", default=1e-3, type=number_in(0.0, math.inf, "a positive number"), help="default %(default)s")
    p.add_argument(
        "--epochs",
        default=None,
        type=int_at_least(1),
        help=f"default: early stopping on the validation rows (at most {MAX_EPOCHS} epochs, fewer on tables "
        f"over {MAX_ROW_PASSES // MAX_EPOCHS} rows; patience "
        f"{DEFAULT_PATIENCE}, best weights restored); {NO_VAL_EPOCHS} epochs without validation rows",
    )
    p.add_argument("--batch-size", default=32, type=int_at_least(1), help="default %(default)s")
    p.add_argument(
        "--val-split",
        default=0.2,
        type=number_in(0.0, 1.0, "a number in [0, 1)", include_low=True),
        help="held-out fraction, stratified for classification (default %(default)s)",
    )
    p.add_argument(
        "--patience",
        default=None,
        type=int_at_least(1),
        help=f"early stopping patience in epochs (default {DEFAULT_PATIENCE} when --epochs is not given)",
    )
    p.add_argument(
        "--no-standardize",
        action="store_true",
        help="use the features as they are (default: standardize each to mean 0, std 1)",
    )
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    p.add_argument("--device", default=None, help="e.g. cuda for --backend torch")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", default=0, type=int_at_least(0), help="initialisation, split and shuffle seed")
    p.add_argument("--out", default="model.safetensors", help="model file (default %(default)s)")
    p.add_argument("--plot", default=None, help="loss-curve PNG (default: beside --out)")
    p.add_argument("--no-plot", action="store_true", help="do not write the loss-curve PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch instead)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(run=run)


def _check_metadata_size(prep: Any) -> None:
    """The preprocessing must fit in a model file's header (read back with a bounded size)."""
    import json

    from flatnet_xp.persistence import MAX_HEADER_BYTES

    size = len(json.dumps(prep.to_dict()).encode("utf-8"))
    if size > MAX_HEADER_BYTES // 2:
        widest = max(prep.columns.steps, key=lambda s: len(json.dumps(s.params))) if prep.columns else None
        hint = f"; the largest is column {widest.column!r}: --drop it" if widest is not None else ""
        raise CliError(f"the preprocessing takes {size} bytes, too much for a model file{hint}")


# ------------------------------------------------------------------------------------ the command
def run(args: argparse.Namespace) -> int:
    """Run ``flatnet-xp train``; raises CliError (status 2) for every mistake before any training."""
    import flatnet_xp as fx
    from flatnet_xp.cli.data import read_training_table
    from flatnet_xp.preprocessing import Preprocessing, fit_columns, infer_target, roles_table

    # 1. Everything that can be checked without reading the data: outputs, backend, flags.
    out = check_output("--out", args.out)
    plot: Path | None = None
    if not args.no_plot:
        plot = check_output("--plot", args.plot or str(out.with_suffix(".png")), png=True)
        if args.plot is not None and not have_module("matplotlib"):
            raise CliError("--plot: needs matplotlib: pip install 'flatnet_xp[plot]' (or use --no-plot)")
    refuse_same_file(("--data", Path(args.data)), ("--out", out), ("--plot", plot))
    check_backend(args.backend, args.device)
    wanted_task, wanted_loss = task_and_loss(args)

    # 2. The data, the task and the split.
    table = read_training_table(args.data, args.target)
    target = table.target_name or "y"
    check_column_flags(args, table)
    try:
        tgt = infer_target(table.y, wanted_task, name=target)  # type: ignore[arg-type]
    except ValueError as exc:
        flag = f"--loss {wanted_loss}: " if wanted_loss else f"--task {wanted_task}: " if wanted_task else ""
        raise CliError(f"{flag}{exc}") from None
    reason = tgt.reason if wanted_task is None else f"--task {args.task}" if args.task else f"--loss {args.loss}"
    loss = wanted_loss or ("cross_entropy" if tgt.task == "classify" else "mse")
    classes = tgt.class_names
    if loss == "bce" and classes is not None and len(classes) != 2:
        raise CliError(f"--loss bce: needs exactly 2 classes, the target {target!r} has {len(classes)}")
    n_out = 1 if tgt.task == "regress" or loss == "bce" else len(classes or ())
    y = tgt.y.astype(np.float64) if loss == "bce" else tgt.y
    train_idx, val_idx, stratified = split_indices(tgt.y, tgt.task == "classify", args.val_split, args.seed)
    if train_idx.shape[0] == 0:
        raise CliError(f"--data {args.data}: no rows left for training")
    columns: Any = None
    roles: list[Any] = []
    if table.frame is not None:
        try:
            columns, roles = fit_columns(
                table.frame.iloc[train_idx], target=target, drop=args.drop or (), features=args.features
            )
        except ValueError as exc:
            raise CliError(f"--data {args.data}: {exc}") from None
        X, names = columns.transform(table.frame), columns.output_names
    else:
        assert table.X is not None
        X, names = table.X, table.feature_names
    if args.layers is not None:
        if args.layers[0] != X.shape[1]:
            raise CliError(
                f"--layers: the first width must be the number of features, {X.shape[1]}, got {args.layers[0]}"
            )
        if args.layers[-1] != n_out:
            raise CliError(f"--layers: the last width must be {n_out} for this target and loss, got {args.layers[-1]}")
        sizes = list(args.layers)
    else:
        sizes = [X.shape[1], *([64] if args.hidden is None else args.hidden), n_out]
    try:
        prep = Preprocessing.fit_from(
            X[train_idx],
            names,
            standardize=not args.no_standardize,
            target_name=target,
            task=tgt.task,
            class_names=classes,
            # counts for the Poisson loss stay counts; other regression targets are standardized
            y=y[train_idx] if tgt.task == "regress" and loss != "poisson" else None,
            columns=columns,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(f"--data {args.data}: {exc}") from None
    _check_metadata_size(prep)
    if tgt.task == "regress":  # a standardized target: the network learns it in units of its spread
        y = prep.scale_target(y)
    Xt, yt = prep.transform(X[train_idx]), y[train_idx]
    val = (prep.transform(X[val_idx]), y[val_idx]) if val_idx.shape[0] else None
    epochs, patience = args.epochs, args.patience
    if epochs is None:
        limit = min(MAX_EPOCHS, max(50, MAX_ROW_PASSES // train_idx.shape[0]))
        epochs = limit if val is not None else NO_VAL_EPOCHS
        patience = patience or (DEFAULT_PATIENCE if val is not None else None)
    if patience is not None and val is None:
        raise CliError("--patience: early stopping needs validation rows; use a --val-split above 0")

    # 3. Say what will happen, then train.
    n_raw = len(table.feature_names)
    print(f"data: {args.data}: {table.n_rows} rows, {n_raw} feature columns ({table.description}); target {target!r}")
    for note in table.notes:
        print(f"  note: {note}")
    if roles:
        print(f"columns ({len(names)} features after encoding; fitted on the training rows):")
        print(roles_table(roles))
    if tgt.task == "classify":
        assert classes is not None
        print(f"task: classification ({reason}), {len(classes)} classes {shown(classes)}; loss {loss}")
    else:
        lo, hi = float(tgt.y.min()), float(tgt.y.max())
        print(f"task: regression ({reason}), target in [{lo:.6g}, {hi:.6g}]; loss {loss}")
    split = f"{train_idx.shape[0]} training rows, {val_idx.shape[0]} validation rows"
    split += " (no validation)" if val is None else " (stratified)" if stratified else ""
    scaled = " and target" if prep.target_scale is not None else ""
    print(f"split: {split}; features{scaled} {'standardized' if prep.standardized else 'used as they are'}")
    acts = [args.activation] * (len(sizes) - 2) + [args.output_activation]
    try:
        net = fx.FlatMLP(sizes, acts, backend=args.backend, dtype=args.dtype, seed=args.seed, device=args.device)
        optimizer = OPTIMIZERS[args.optimizer](lr=args.lr)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    hidden = f"{args.activation} hidden, " if len(sizes) > 2 else "no hidden layer, "
    print(
        f"network: {sizes} ({hidden}{args.output_activation} output), {args.optimizer} "
        f"lr {args.lr:g}, {epochs_text(args.epochs, epochs, patience)}, batch {args.batch_size}, "
        f"{args.backend} {args.dtype}"
    )
    bars = use_bars(args)
    lines = EpochLines(epochs, val, loss, bars, args.quiet)
    t0 = time.perf_counter()
    try:
        hist = net.fit(
            Xt,
            yt,
            epochs=epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            loss=loss,
            seed=args.seed,
            validation_data=val,
            patience=patience,
            callbacks=[lines],
            progress=bars,
        )
    except fx.DivergenceError as exc:
        raise CliError(f"training diverged: {exc}", status=1) from None
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    elapsed = time.perf_counter() - t0

    # 4. Save the model with its preprocessing, and the loss curve.
    net.preprocessing = prep
    try:
        net.save(out)
    except OSError as exc:
        raise CliError(f"--out {out}: could not write the model ({exc.strerror or exc})", status=1) from None
    summary = f"trained for {hist.epochs} epochs in {elapsed:.2f} s: loss {hist.loss[-1]:.6g}"
    if val is not None:
        summary += f", val_loss {hist.val_loss[-1]:.6g}, {lines.metric_name} {lines.metric[-1]:.4f}"
    if hist.stopped_early and hist.best_epoch is not None:
        best = hist.best_epoch  # counted from 1
        summary += f"; stopped early, restored the weights of epoch {best}"
        if val is not None and len(hist.val_loss) >= best:
            summary += f" (val_loss {hist.val_loss[best - 1]:.6g}, {lines.metric_name} {lines.metric[best - 1]:.4f})"
    print(summary)
    print(f"model written to {out} (predict with: flatnet-xp predict --model {out} --data FILE)")
    if plot is not None:
        try:
            fig = hist.plot(log_scale=True)
        except ImportError:
            print("(matplotlib is not installed: no loss-curve PNG; pip install 'flatnet_xp[plot]')")
        else:
            from flatnet_xp._atomic import save_figure

            try:
                save_figure(fig, plot, dpi=110)
            except OSError as exc:
                raise CliError(f"--plot {plot}: could not write the PNG ({exc.strerror or exc})", status=1) from None
            print(f"loss curve written to {plot}")
    return 0
