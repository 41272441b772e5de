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
        description="Load a model file, read the columns it was trained on from the data (by name, in any "
        "order; others are ignored), replay the stored preprocessing and write the predictions as CSV with a "
        "header: the class names (classification) or the values (regression; the rate for a Poisson model) "
        "under the target's name, or with --proba one column per class; an ID column dropped in training "
        "comes first. When the data holds the target column, the accuracy or R^2 and the loss are reported "
        "(on stderr when the predictions go to stdout).",
    )
    p.add_argument("--model", required=True, help="model file written by flatnet-xp train")
    p.add_argument("--data", required=True, help="a table (or .npz) with the columns the model was trained on")
    p.add_argument("--out", default=None, help="CSV to write (default: print to stdout)")
    p.add_argument("--proba", action="store_true", help="class probabilities, one column per class")
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    p.add_argument("--device", default=None)
    p.set_defaults(run=run)


def _check_model_file(path_text: str) -> Path:
    """``--model``: a safetensors file (by its first bytes), not a table given in the wrong place."""
    from flatnet_xp.cli.tables import TABLE_SUFFIXES, table_suffix

    if Path(path_text).is_dir():
        raise CliError(f"--model {path_text}: is a folder; give the .safetensors file flatnet-xp train wrote")
    path = check_input("--model", path_text)
    if table_suffix(path) in TABLE_SUFFIXES or path.suffix.lower() == ".npz":
        raise CliError(
            f"--model {path_text}: a table, not a model; give the .safetensors file flatnet-xp train wrote "
            "(the table goes after --data)"
        )
    return path


def _check_model_bytes(path: Path) -> None:
    """The file starts as a safetensors file does (8-byte header length, then a JSON object)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise CliError(f"--model {path}: {exc.strerror or exc}") from None
    size = path.stat().st_size
    if len(head) < 9 or int.from_bytes(head[:8], "little") > size - 8 or head[8:9] != b"{":
        raise CliError(
            f"--model {path}: not a model file (not safetensors); give the file flatnet-xp train wrote with --out"
        )


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


def _outputs(net: Any, prep: Any, Z: np.ndarray) -> np.ndarray:
    """Regression predictions in the target's units: the rate (exp of the output) for a Poisson
    model, as :meth:`FlatMLP.score` means it; else the outputs, unstandardized."""
    from flatnet_xp.backends import to_numpy

    out = np.asarray(to_numpy(net.predict(Z)), dtype=np.float64)
    if net.loss_ == "poisson":
        return np.exp(out)
    return prep.unscale_target(out)


def predictions_csv(net: Any, prep: Any, X: np.ndarray, proba: bool, ids: Any = None, id_name: str = "") -> str:
    """The predictions for features ``X`` (before standardization) as CSV text with a header
    (see the command's description); with ``ids``, a first column ``id_name`` holding them."""
    from flatnet_xp.backends import to_numpy

    Z = prep.transform(X)
    column = prep.target_name or "prediction"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if prep.task == "regress":
        values = _outputs(net, prep, Z)
        header = [column] if values.shape[1] == 1 else [f"{column}_{k}" for k in range(values.shape[1])]
        rows = [[repr(float(v)) for v in row] for row in values.tolist()]
    elif proba:
        p = np.asarray(to_numpy(net.predict_proba(Z)), dtype=np.float64)
        if p.shape[1] == 1:  # one sigmoid output (bce): P(second class)
            p = np.concatenate([1.0 - p, p], axis=1)
        header = list(prep.class_names)
        rows = [[repr(v) for v in row] for row in p.tolist()]
    else:
        labels = prep.decode(np.asarray(to_numpy(net.predict_class(Z))).astype(np.int64))
        header = [column]
        rows = [[str(v)] for v in labels.tolist()]
    if ids is not None:
        header = [id_name, *header]
        rows = [[str(i), *row] for i, row in zip(np.asarray(ids, dtype=object).tolist(), rows, strict=True)]
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def score_line(net: Any, prep: Any, X: np.ndarray, y_raw: Any) -> str | None:
    """``accuracy 0.95, loss 0.12 on 40 rows with a target`` when the data holds the target column."""
    from flatnet_xp.preprocessing.steps import cell_text, is_missing

    cells = np.asarray(y_raw, dtype=object)
    keep = ~np.fromiter((is_missing(v) for v in cells.tolist()), dtype=bool, count=cells.shape[0])
    if not keep.any():
        return None
    Z, kept = prep.transform(X[keep]), cells[keep].tolist()
    loss = net.loss_ or ("cross_entropy" if prep.task == "classify" else "mse")
    if prep.task == "classify":
        index = {c: k for k, c in enumerate(prep.class_names)}
        codes = [index.get(cell_text(v)) for v in kept]
        unknown = sum(c is None for c in codes)
        known = np.asarray([c is not None for c in codes])
        extra = f" ({unknown} of them hold a class unknown to the model: counted as wrong)" if unknown else ""
        if not known.any():
            return f"accuracy 0.0000 on {len(kept)} rows with a target{extra}"
        y = np.asarray([c for c in codes if c is not None], dtype=np.int64)
        yy = y.astype(np.float64) if loss == "bce" else y
        acc = net.score(Z[known], yy, loss=loss) * int(known.sum()) / len(kept)
        value = net.evaluate(Z[known], yy, loss=loss)
        where = f" (on the {int(known.sum())} rows of known classes)" if unknown else ""
        return f"accuracy {acc:.4f}, {loss} loss {value:.6g}{where} on {len(kept)} rows with a target{extra}"
    try:
        y = np.asarray([float(v) for v in kept], dtype=np.float64)
    except (TypeError, ValueError):
        return "no score: the target column holds text, the model is a regression model"
    pred = _outputs(net, prep, Z)[:, 0]
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 and y.shape[0] > 1 else float("nan")
    value = float(np.mean((y - pred) ** 2))
    return f"R^2 {r2:.4f}, mean squared error {value:.6g} on {y.shape[0]} rows with a target"


def run(args: argparse.Namespace) -> int:
    """Run ``flatnet-xp predict``; raises CliError (status 2) for every mistake before predicting."""
    from flatnet_xp._atomic import atomic_write_bytes
    from flatnet_xp.cli.data import check_data_path, read_prediction_table

    model = _check_model_file(args.model)
    data = check_data_path(args.data)
    out = check_output("--out", args.out) if args.out is not None else None
    refuse_same_file(("--model", model), ("--data", data), ("--out", out))
    check_backend(args.backend, args.device)
    _check_model_bytes(model)
    net, prep = _load(model, args.backend, args.device)
    if args.proba and prep.task != "classify":
        raise CliError(f"--proba: {model} is a regression model (it has no classes)")
    table = read_prediction_table(args.data, prep)
    id_name = prep.columns.id_column if prep.columns is not None else None
    text = predictions_csv(net, prep, table.X, args.proba, table.ids, id_name or "")
    score = score_line(net, prep, table.X, table.y) if table.y is not None else None
    for note in table.notes:  # never silent: what the model could not read as in training
        print(f"note: {note}", file=sys.stderr)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        if score:
            print(score, file=sys.stderr)
        return 0
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as exc:
        raise CliError(f"--out {out}: could not write the predictions ({exc.strerror or exc})", status=1) from None
    what = "probabilities" if args.proba else "predictions"
    print(f"{table.X.shape[0]} {what} written to {out}")
    if score:
        print(score)
    return 0
