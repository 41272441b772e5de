"""The digits and diabetes comparisons again, through the scikit-learn estimator API.

FlatMLPClassifier / FlatMLPRegressor against MLPClassifier / MLPRegressor with the same parameters,
each inside a Pipeline with StandardScaler; then both without shuffling, where they train the same
weights. Run: ``python examples/sklearn_estimators.py [--backend torch]``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _compare import timed
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--backend", default="auto", help="flatnet_xp backend (default: follow the input, NumPy)")
args = parser.parse_args()
warnings.simplefilter("ignore", ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X.astype(np.float32)  # float32 weights and predictions follow (dtype=None)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
digits = dict(
    hidden_layer_sizes=(64,),
    solver="adam",
    alpha=0.0,
    batch_size=32,
    learning_rate_init=1e-3,
    max_iter=60,
    tol=0.0,
    n_iter_no_change=61,
    random_state=0,
)
models = {
    "FlatMLPClassifier": FlatMLPClassifier(**digits, backend=args.backend),
    "MLPClassifier": MLPClassifier(**digits),
}
print("digits (accuracy on the held-out quarter)")
for name, model in models.items():
    pipe = make_pipeline(StandardScaler(), model)
    t = timed(lambda p=pipe: p.fit(Xtr, ytr))
    print(f"  {name:<18} accuracy {pipe.score(Xte, yte):.4f}  fit {t:.2f} s")

Xd, yd = load_diabetes(return_X_y=True)
Xdtr, Xdte, ydtr, ydte = train_test_split(Xd, yd, test_size=0.25, random_state=0)
ym, ysd = ydtr.mean(), ydtr.std()
diabetes = dict(
    hidden_layer_sizes=(8,),
    solver="adam",
    alpha=0.0,
    batch_size=16,
    learning_rate_init=1e-3,
    max_iter=100,
    tol=0.0,
    n_iter_no_change=101,
    random_state=0,
)
models = {
    "FlatMLPRegressor": FlatMLPRegressor(**diabetes, backend=args.backend),
    "MLPRegressor": MLPRegressor(**diabetes),
}
print("diabetes (R^2 on the held-out quarter; target standardised for training)")
for name, model in models.items():
    pipe = make_pipeline(StandardScaler(), model)
    t = timed(lambda p=pipe: p.fit(Xdtr, (ydtr - ym) / ysd))
    print(f"  {name:<18} R^2 {pipe.score(Xdte, (ydte - ym) / ysd):.4f}  fit {t:.2f} s")

# Shuffled fits differ by their sample orders only: without shuffling the weights are the same.
Xs = StandardScaler().fit_transform(Xtr.astype(np.float64))
ours = FlatMLPClassifier(**digits, shuffle=False, backend=args.backend).fit(Xs, ytr)
theirs = MLPClassifier(**digits, shuffle=False).fit(Xs, ytr)
gap = np.abs(np.asarray(ours.predict_proba(Xs)) - theirs.predict_proba(Xs)).max()
print(f"digits without shuffling, float64: largest difference of predict_proba {gap:.1e}")
