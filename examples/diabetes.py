"""Diabetes progression (scikit-learn's bundled regression set): flatnet_xp beside MLPRegressor.

Same architecture [10, 8, 1] (ReLU, linear output, squared error; 331 training samples only),
Adam at 1e-3, batch 16, 100 epochs, no L2 and no early stopping, standardised inputs and target, a fixed 75/25 split.
Run: ``python examples/diabetes.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _compare import fit_quietly, sklearn_mlp, timed
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

import flatnet_xp as fx

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--backend", default="numpy")
parser.add_argument("--epochs", type=int, default=100)
args = parser.parse_args()

X, y = load_diabetes(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
xs, ys = StandardScaler().fit(Xtr), StandardScaler().fit(ytr[:, None])
Xtr, Xte = xs.transform(Xtr).astype(np.float32), xs.transform(Xte).astype(np.float32)
ttr = ys.transform(ytr[:, None]).astype(np.float32)

sizes, acts = [10, 8, 1], ["relu", "identity"]
net = fx.FlatMLP(sizes, acts, backend=args.backend, seed=0)


def fit_ours() -> None:
    net.set_params(*fx.FlatMLP(sizes, acts, seed=0).get_params())
    net.fit(Xtr, ttr, epochs=args.epochs, batch_size=16, optimizer=fx.Adam(lr=1e-3), loss="mse", seed=0, progress=False)


skl = sklearn_mlp(MLPRegressor, (8,), batch_size=16, lr=1e-3, epochs=args.epochs)


def fit_sklearn() -> None:
    fit_quietly(skl, Xtr, ttr.ravel())


t_ours, t_skl = timed(fit_ours), timed(fit_sklearn)
pred_ours = ys.inverse_transform(fx.to_numpy(net.predict(Xte)))[:, 0]
pred_skl = ys.inverse_transform(skl.predict(Xte)[:, None])[:, 0]
print(
    f"diabetes: {len(Xtr)} training / {len(Xte)} held-out samples, {sizes}, Adam 1e-3, batch 16, {args.epochs} epochs"
)
print(f"  flatnet_xp ({args.backend}): held-out R^2 {r2_score(yte, pred_ours):.4f}, fit {t_ours:.2f} s")
print(f"  scikit-learn MLPRegressor: held-out R^2 {r2_score(yte, pred_skl):.4f}, fit {t_skl:.2f} s")
print(f"  fit speed-up {t_skl / t_ours:.1f}x")
