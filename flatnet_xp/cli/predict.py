"""``flatnet-xp predict``: apply a model file (and its stored preprocessing) to the raw rows of a table."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from flatnet_xp.backends import BACKENDS
from flatnet_xp.cli._common import CliError, check_backend, check_input, check_output, refuse_same_file

__all__ = ["add_parser", "predictions_csv", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a model written by `flatnet-xp train` on the raw rows of a CSV or .npz",
        description="Load a model file, check the data's columns against the feature names stored in it "
        "(a target column may be present: it is ignored), apply the stored standardization and write the "
        "predictions as CSV with a header: the class names (classification) or the values (regression) "
        "under the target's name, or with --proba one column per class.",
    )
    p.add_argument("--model", required=True, help="model file written by flatnet-xp train")
    p.add_argument("--data", required=True, help="CSV or .npz with the same feature columns as in training")
    p.add_argument("--out", default=None, help="CSV to write (default: print to stdout)")
    p.add_argument("--proba", action="store_true", help="class probabilities, one column per class")
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    p.add_argument("--device", default=None)
    p.set_defaults(run=run)


def _load(path: Path, backend: str, device: str | None) -> tuple[Any, Any]:
    """The network and its :class:`~flatnet_xp.preprocessing.Preprocessing`, checked against each other."""
    import flatnet_xp as fx

    try:
        net = fx.FlatMLP.load(path, backend=backend, device=device)
    except fx.ModelFileError as exc:
        raise CliError(f"--model {exc}") from None
    except OSError as exc:
        raise CliError(f"--model {path}: {exc.strerror or exc}") from None
    except ImportError as exc:
        raise CliError(f"--model {path}: {exc}") from None
    prep = getattr(net, "preprocessing", None)
    if prep is None:
        raise CliError(
            f"--model {path}: the file holds no preprocessing (it was saved from Python, not by flatnet-xp train); "
            "predict with the Python API instead: fx.FlatMLP.load(path).predict(X)"
        )
    sizes = net.layout.sizes
    outputs = 1 if prep.task == "regress" else len(prep.class_names)
    if sizes[0] != prep.n_features or not (sizes[-1] == outputs or (outputs == 2 and sizes[-1] == 1)):
        raise CliError(
            f"--model {path}: inconsistent file: the network is {list(sizes)} but the preprocessing has "
            f"{prep.n_features} features and {outputs} outputs"
        )
    return net, prep


def predictions_csv(net: Any, prep: Any, X: np.ndarray, proba: bool) -> str:
    """The predictions for raw rows ``X`` as CSV text with a header (see the command's description)."""
    from flatnet_xp.backends import to_numpy

    Z = prep.transform(X)
    column = prep.target_name or "prediction"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if prep.task == "regress":
        values = prep.unscale_target(net.predict(Z))  # back into the target's units
        writer.writerow([column] if values.shape[1] == 1 else [f"{column}_{k}" for k in range(values.shape[1])])
        writer.writerows([[repr(float(v)) for v in row] for row in values.tolist()])
        return buf.getvalue()
    if proba:
        p = np.asarray(to_numpy(net.predict_proba(Z)), dtype=np.float64)
        if p.shape[1] == 1:  # one sigmoid output (bce): P(second class)
            p = np.concatenate([1.0 - p, p], axis=1)
        writer.writerow(prep.class_names)
        writer.writerows([[repr(v) for v in row] for row in p.tolist()])
        return buf.getvalue()
    labels = prep.decode(to_numpy(net.predict_class(Z)))
    writer.writerow([column])
    writer.writerows([[str(v)] for v in labels.tolist()])
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    """Run ``flatnet-xp predict``; raises CliError (status 2) for every mistake before predicting."""
    from flatnet_xp._atomic import atomic_write_bytes
    from flatnet_xp.cli.data import DATA_SUFFIXES, read_prediction_features

    out = check_output("--out", args.out) if args.out is not None else None
    model = check_input("--model", args.model)
    check_input("--data", args.data, DATA_SUFFIXES)
    refuse_same_file(("--model", model), ("--data", Path(args.data)), ("--out", out))
    check_backend(args.backend, args.device)
    net, prep = _load(model, args.backend, args.device)
    if args.proba and prep.task != "classify":
        raise CliError(f"--proba: {model} is a regression model (it has no classes)")
    X, _ = read_prediction_features(args.data, prep)
    text = predictions_csv(net, prep, X, args.proba)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as exc:
        raise CliError(f"--out {out}: could not write the predictions ({exc.strerror or exc})", status=1) from None
    what = "probabilities" if args.proba else "predictions"
    print(f"{X.shape[0]} {what} written to {out}")
    return 0
