"""Handwritten digits (scikit-learn's bundled set, offline): flatnet_xp beside MLPClassifier.

Same architecture [64, 64, 10] (ReLU, softmax cross-entropy), Adam at 1e-3, batch 32, 60 epochs,
no L2 and no early stopping for either, float32 inputs, a fixed stratified 75/25 split.
Run: ``python examples/digits.py [--backend numpy]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _compare import fit_quietly, sklearn_mlp, timed
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import flatnet_xp as fx

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--backend", default="numpy")
parser.add_argument("--epochs", type=int, default=60)
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(Xtr)
Xtr, Xte = scaler.transform(Xtr).astype(np.float32), scaler.transform(Xte).astype(np.float32)

net = fx.FlatMLP([64, 64, 10], ["relu", "identity"], backend=args.backend, seed=0)


def fit_ours() -> None:
    net.set_params(*fx.FlatMLP([64, 64, 10], ["relu", "identity"], seed=0).get_params())
    net.fit(
        Xtr,
        ytr,
        epochs=args.epochs,
        batch_size=32,
        optimizer=fx.Adam(lr=1e-3),
        loss="cross_entropy",
        seed=0,
        progress=False,
    )


skl = sklearn_mlp(MLPClassifier, (64,), batch_size=32, lr=1e-3, epochs=args.epochs)


def fit_sklearn() -> None:
    fit_quietly(skl, Xtr, ytr)


t_ours, t_skl = timed(fit_ours), timed(fit_sklearn)
acc_ours = net.score(Xte, yte, loss="cross_entropy")
acc_skl = skl.score(Xte, yte)
print(
    f"digits: {len(Xtr)} training / {len(Xte)} held-out samples, [64, 64, 10], Adam 1e-3, batch 32, "
    f"{args.epochs} epochs"
)
print(f"  flatnet_xp ({args.backend}): held-out accuracy {acc_ours:.4f}, fit {t_ours:.2f} s")
print(f"  scikit-learn MLPClassifier: held-out accuracy {acc_skl:.4f}, fit {t_skl:.2f} s")
print(f"  fit speed-up {t_skl / t_ours:.1f}x")
