"""Initial weights, drawn on the host from one seeded generator and written in chunks into the buffer.

Drawing on the host (``numpy.random``) makes one seed give the same starting weights on every
backend. Drawing in chunks of at most :data:`CHUNK` values and writing each straight into the
flat parameter buffer keeps the transient memory of building a network to a few MB whatever its
size (drawing all weights at once in float64 and converting them would need ~3x the parameters).

Schemes (``fan_in = L_k``, ``fan_out = L_{k+1}``, ``U(-a, a)`` uniform):

* ``"glorot"``: Glorot & Bengio (2010) ``a = sqrt(6 / (fan_in + fan_out))``, biases 0;
* ``"he"``: He et al. (2015) ``a = sqrt(6 / fan_in)`` (ReLU gain), biases 0;
* ``"auto"`` (default): He for relu/leaky_relu layers, Glorot for the others;
* ``"torch"``: ``torch.nn.Linear``'s default, weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``;
* ``"sklearn"``: scikit-learn's MLP: Glorot with factor 2 instead of 6 when the first layer is
  logistic, biases drawn from the same range, in scikit-learn's order and ``(fan_in, fan_out)``
  shape: with a ``numpy.random.RandomState`` of the same seed the initial weights equal
  ``MLPClassifier``'s / ``MLPRegressor``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from flatnet_xp.layout import Layout

__all__ = ["CHUNK", "INITS", "initialize"]

#: Values drawn per chunk (256K float64 = 2 MB).
CHUNK = 1 << 18

INITS = ("auto", "glorot", "he", "torch", "sklearn")


def _bounds(init: str, layout: Layout, activations: Sequence[str]) -> list[tuple[float, float]]:
    """``(weight bound, bias bound)`` of each layer (a bias bound of 0 means zero biases)."""
    out = []
    for (n_out, n_in), act in zip(layout.shapes, activations, strict=True):
        if init == "torch":
            a = 1.0 / math.sqrt(n_in)
            out.append((a, a))
        elif init == "sklearn":
            factor = 2.0 if activations[0] == "sigmoid" else 6.0
            a = math.sqrt(factor / (n_in + n_out))
            out.append((a, a))
        else:
            he = init == "he" or (init == "auto" and act in ("relu", "leaky_relu"))
            out.append((math.sqrt(6.0 / (n_in if he else n_in + n_out)), 0.0))
    return out


def initialize(
    init: str,
    layout: Layout,
    activations: Sequence[str],
    rng: np.random.Generator | np.random.RandomState,
    write_weights: Callable[[int, slice, slice, np.ndarray], None],
    write_biases: Callable[[int, np.ndarray], None],
) -> None:
    """Draw the initial parameters and hand them over chunk by chunk.

    ``write_weights(k, rows, cols, values)`` receives a float64 block for ``W_k[rows, cols]`` (at most
    :data:`CHUNK` values); ``write_biases(k, values)`` layer ``k``'s biases. Zero biases are not
    written (the buffer starts zeroed).
    """
    for k, (a_w, a_b) in enumerate(_bounds(init, layout, activations)):
        n_out, n_in = layout.shapes[k]
        if init == "sklearn":
            # scikit-learn draws coefs as (fan_in, fan_out): its rows are our columns.
            step = max(1, CHUNK // n_out)
            for c0 in range(0, n_in, step):
                c1 = min(c0 + step, n_in)
                write_weights(k, slice(None), slice(c0, c1), rng.uniform(-a_w, a_w, size=(c1 - c0, n_out)).T)
        else:
            step = max(1, CHUNK // n_in)
            for r0 in range(0, n_out, step):
                r1 = min(r0 + step, n_out)
                write_weights(k, slice(r0, r1), slice(None), rng.uniform(-a_w, a_w, size=(r1 - r0, n_in)))
        if a_b:
            write_biases(k, rng.uniform(-a_b, a_b, size=n_out))
