"""scikit-learn estimators backed by the flat network: ``FlatMLPClassifier`` and ``FlatMLPRegressor``.

Drop-ins for ``MLPClassifier`` / ``MLPRegressor``: the same parameters (plus ``backend`` and
``dtype``), attributes, losses, initial weights for the same ``random_state``, L2 penalty,
learning-rate schedules and stopping rules; scikit-learn's own MLP test file passes against them
(``tests/test_sklearn_suite.py``) except for the tests that read its private internals. Beyond
scikit-learn's MLP, they support the Array API: under ``sklearn.config_context(array_api_dispatch=True)``
they train on the namespace and device of ``X`` (PyTorch, CuPy, JAX, array-api-strict) and answer
in it. Import this module only when scikit-learn is installed (``pip install 'flatnet_xp[sklearn]'``).

Everything that decides the weights is scikit-learn's: initial weights for a ``random_state``,
losses (with their clipping), per-batch L2, SGD velocity and Adam updates, learning-rate schedules,
stopping rules, early-stopping split, and each epoch's sample order (scikit-learn's
``shuffle(sample_idx, random_state=...)`` stream, handed to the core ``fit`` as ``shuffle=order``;
each ``partial_fit`` call drawing its order afresh from ``random_state``, as scikit-learn's does).
Both train the same
weights to rounding. The remaining differences:

* ``sample_weight`` with mini-batches: a batch's L2 term is divided by ``batch size * mean weight``
  where scikit-learn divides by the batch's own weight sum (the same without weights).
* ``loss_curve_``'s L2 term uses weight norms at epoch ends, interpolated across the epoch's
  batches (exact for one batch an epoch, within ~1e-6 otherwise; the weights are exact).
* Multi-output squared error under L-BFGS minimises ``0.5 * n_outputs * mean``, whose gradient is
  the one scikit-learn hands scipy with the value ``0.5 * mean``.
* float32 fits compute entirely in float32 (scikit-learn's backward pass turns float64 when the
  targets are float64).
* ``partial_fit`` is absent with ``solver="lbfgs"`` for the regressor too; ``solver="adamw"``,
  ``activation="leaky_relu"``, the classifier's ``class_weight``, ``validation_loss_curve_``,
  ``backend`` and ``dtype`` are flatnet_xp's additions.
"""

from flatnet_xp.sklearn._classifier import FlatMLPClassifier
from flatnet_xp.sklearn._onnx import register_skl2onnx
from flatnet_xp.sklearn._regressor import FlatMLPRegressor

__all__ = ["FlatMLPClassifier", "FlatMLPRegressor", "register_skl2onnx"]
