"""5-fold cross-validation time of the flatnet_xp estimators against scikit-learn's MLP, single-threaded.

Each data set is scored with ``cross_val_score(make_pipeline(StandardScaler(), estimator), X, y, cv=5)``
for scikit-learn's ``MLPClassifier``/``MLPRegressor`` and for ``FlatMLPClassifier``/``FlatMLPRegressor``
with the same hyperparameters (NumPy backend, and ``backend="jax"``, its compilation included: the
folds are five fresh fits). NumPy's BLAS is limited to one thread with threadpoolctl, XLA to one
thread with ``XLA_FLAGS`` (set before JAX is imported). Every configuration runs ``--repeats`` times
after one warm-up run; the table gives the medians. The machine, the BLAS (threadpoolctl's record and
``OPENBLAS_CORETYPE``) and the versions are printed with it (and written with ``--out FILE.json``).

Run: ``python benchmarks/sklearn_cv.py [--repeats 3] [--max-iter 50] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

# One thread everywhere, before NumPy's BLAS or XLA start their pools.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np
import sklearn
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor


def _california() -> tuple[np.ndarray, np.ndarray] | None:
    """A 2,000-row subset of California housing when it is cached locally (no download)."""
    try:
        X, y = datasets.fetch_california_housing(return_X_y=True, download_if_missing=False)
    except OSError:
        return None
    rows = np.random.default_rng(0).choice(X.shape[0], 2000, replace=False)
    return X[rows], y[rows]


#: name: (loader, "clf" or "reg")
DATASETS: dict[str, tuple[Callable[[], Any], str]] = {
    "iris": (lambda: datasets.load_iris(return_X_y=True), "clf"),
    "breast_cancer": (lambda: datasets.load_breast_cancer(return_X_y=True), "clf"),
    "digits": (lambda: datasets.load_digits(return_X_y=True), "clf"),
    "diabetes": (lambda: datasets.load_diabetes(return_X_y=True), "reg"),
    "california (2k rows)": (_california, "reg"),
}


def _cv_seconds(make: Callable[[], Any], X: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median seconds of one 5-fold ``cross_val_score`` (after one warm-up) and its mean score."""
    times, score = [], float("nan")
    for i in range(repeats + 1):
        start = time.perf_counter()
        scores = cross_val_score(make_pipeline(StandardScaler(), make()), X, y, cv=5)
        if i:  # the first run warms up (imports, JAX's compilation cache is NOT kept across fresh fits)
            times.append(time.perf_counter() - start)
        score = float(np.mean(scores))
    return statistics.median(times), score


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import jax

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "jax": jax.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median)")
    parser.add_argument("--max-iter", type=int, default=50, help="epochs per fit (the same for both)")
    parser.add_argument("--no-jax", action="store_true", help="skip the backend='jax' column")
    parser.add_argument("--out", help="also write the records to this JSON file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    params = dict(hidden_layer_sizes=(100,), max_iter=args.max_iter, random_state=0)
    rows = []
    with threadpool_limits(limits=1):
        machine = _machine()
        machine["threadpoolctl"] = [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "architecture")}
            for info in threadpool_info()
        ]
        for name, (load, kind) in DATASETS.items():
            data = load()
            if data is None:
                print(f"{name}: not available offline, skipped", file=sys.stderr)
                continue
            X, y = data
            theirs, ours = (MLPClassifier, FlatMLPClassifier) if kind == "clf" else (MLPRegressor, FlatMLPRegressor)
            sk_s, sk_score = _cv_seconds(partial(theirs, **params), X, y, args.repeats)
            np_s, np_score = _cv_seconds(partial(ours, **params), X, y, args.repeats)
            row = {"dataset": name, "shape": list(X.shape), "task": kind, "sklearn_s": sk_s, "numpy_s": np_s,
                   "sklearn_score": sk_score, "numpy_score": np_score}  # fmt: skip
            if not args.no_jax:
                jax_fit = partial(ours, backend="jax", **params)
                row["jax_s"], row["jax_score"] = _cv_seconds(jax_fit, X, y, args.repeats)
            rows.append(row)
            print(f"{name}: done", file=sys.stderr)
    print(f"5-fold `cross_val_score`, StandardScaler + (100,) hidden units, adam, max_iter={args.max_iter}, "
          f"1 thread; medians of {args.repeats} runs. {machine['cpu']} ({machine['cpu_count']} cores), "
          f"OPENBLAS_CORETYPE={machine['OPENBLAS_CORETYPE']}, numpy {machine['numpy']}, "
          f"scikit-learn {machine['scikit-learn']}, jax {machine['jax']}.\n")  # fmt: skip
    head = "| data set | n x d | scikit-learn s | flatnet_xp numpy s | speed-up |"
    rule = "|---|---|---:|---:|---:|"
    if not args.no_jax:
        head += " flatnet_xp jax s | jax / numpy time |"
        rule += "---:|---:|"
    print(head + " CV score (sklearn / ours) |\n" + rule + "---|")
    for r in rows:
        line = (f"| {r['dataset']} | {r['shape'][0]} x {r['shape'][1]} | {r['sklearn_s']:.2f} | {r['numpy_s']:.2f} | "
                f"{r['sklearn_s'] / r['numpy_s']:.2f}x |")  # fmt: skip
        if "jax_s" in r:
            line += f" {r['jax_s']:.2f} | {r['jax_s'] / r['numpy_s']:.2f} |"
        print(line + f" {r['sklearn_score']:.4f} / {r['numpy_score']:.4f} |")
    print("\nthreadpoolctl:", json.dumps(machine["threadpoolctl"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "max_iter": args.max_iter, "repeats": args.repeats, "rows": rows}, f,
                      indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
