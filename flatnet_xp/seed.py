"""The seed write-up's experiment ("Linearized Weight Representation in Neural Networks").

50 inputs, 5 sigmoid outputs, 1000 samples, per-sample SGD for 10 epochs; the seed prints, each
epoch, the loss of the LAST sample of that epoch (computed before its update). Its gradient
``-2 (y - z) f'(s) x`` at ``lr = 0.1`` is exactly ``lr = 0.5`` on the mean-over-outputs MSE
(``0.5 * 2 / 5 = 0.1 * 2``), which is what :func:`run_seed_experiment` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SEED_LR", "SEED_TABLE", "SeedData", "run_seed_experiment", "seed_data", "seed_loops"]

#: The 10 losses printed in the seed write-up, verbatim.
SEED_TABLE: tuple[float, ...] = (
    0.1639518888727417,
    0.0044892627238109955,
    4.7578049267731775e-06,
    5.567543772289793e-06,
    3.05669317549518e-06,
    2.221313599958404e-06,
    1.783741760239858e-06,
    1.4484989888879683e-06,
    1.1881932321334e-06,
    9.855031262001033e-07,
)
#: The seed's learning rate on its sum-over-outputs gradient.
SEED_LR = 0.1
L1, L2, N_SAMPLES, EPOCHS = 50, 5, 1000, 10


@dataclass(frozen=True)
class SeedData:
    """The seed's data and starting parameters, drawn exactly as its notebook draws them."""

    x: np.ndarray  # (1000, 50)
    y: np.ndarray  # (1000, 5)
    w: np.ndarray  # (250,) flat, seed layout
    b: np.ndarray  # (5,)


def seed_data(n_samples: int = N_SAMPLES) -> SeedData:
    """``np.random.seed(0)``; x, wt, bt, y; then w and b: the seed's draws, without global state."""
    rs = np.random.RandomState(0)
    x = rs.randn(N_SAMPLES, L1)
    wt = rs.randn(L1 * L2)
    bt = rs.randn(L2)
    y = 1 / (1 + np.exp(-(x @ wt.reshape(L1, L2) + bt)))
    w = rs.randn(L1 * L2)
    b = rs.randn(L2)
    return SeedData(x[:n_samples], y[:n_samples], w, b)


def run_seed_experiment(
    backend: str = "numpy", epochs: int = EPOCHS, device: Any = None
) -> tuple[list[float], list[float]]:
    """Rebuild the seed's experiment through the public API.

    Returns
    -------
    table : list of float
        The loss of the last sample of each epoch (the seed's printed values).
    batch_loss : list of float
        Every step's loss (``epochs * 1000`` values).
    """
    import flatnet_xp as fx

    data = seed_data()
    net = fx.FlatMLP([L1, L2], activations="sigmoid", backend=backend, dtype="float64", device=device)
    net.set_params(data.w, data.b)
    hist = net.fit(
        data.x,
        data.y,
        epochs=epochs,
        batch_size=1,
        optimizer=fx.SGD(lr=SEED_LR * L2),
        loss="mse",
        shuffle=False,
        progress=False,
    )
    return hist.batch_loss[N_SAMPLES - 1 :: N_SAMPLES], hist.batch_loss


def seed_loops(data: SeedData, epochs: int = EPOCHS, n_samples: int = N_SAMPLES) -> list[float]:
    """The seed notebook's own training loop: per-element Python loops with NumPy scalar indexing.

    Kept as the reference implementation for benchmarks (``impl="seed_loops"``); slow on purpose.
    Modifies copies of ``data.w`` and ``data.b``; returns the loss of the last sample of each epoch.
    """
    x_matrix, y_matrix = data.x, data.y
    w, b = data.w.copy(), data.b.copy()
    dw, db, zl2 = np.zeros_like(w), np.zeros_like(b), np.zeros(L2)
    f2 = lambda s: 1 / (1 + np.exp(-s))  # noqa: E731 - the seed's own spelling
    df2 = lambda s: f2(s) * (1 - f2(s))  # noqa: E731
    lr = SEED_LR
    losses = []
    for _ in range(epochs):
        loss = 0.0
        for n in range(n_samples):
            x, y = x_matrix[n], y_matrix[n]
            loss = 0.0
            for l2 in range(L2):
                s2 = 0.0
                for l1 in range(L1):
                    s2 += x[l1] * w[l1 + L1 * l2]
                s2 += b[l2]
                zl2[l2] = f2(s2)
                loss += (y[l2] - zl2[l2]) ** 2
                for l1 in range(L1):
                    dw[l1 + L1 * l2] = -2 * (y[l2] - zl2[l2]) * df2(s2) * x[l1]
                db[l2] = -2 * (y[l2] - zl2[l2]) * df2(s2)
            for l2 in range(L2):
                for l1 in range(L1):
                    w[l1 + L1 * l2] = w[l1 + L1 * l2] - lr * dw[l1 + L1 * l2]
                b[l2] = b[l2] - lr * db[l2]
        loss /= L2
        losses.append(float(loss))
    return losses
