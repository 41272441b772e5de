"""scikit-learn estimators backed by the flat network: ``FlatMLPClassifier`` and ``FlatMLPRegressor``.

Drop-ins for ``MLPClassifier`` / ``MLPRegressor``: the same parameters (plus ``backend`` and
``dtype``), attributes, losses, initial weights for the same ``random_state``, L2 penalty,
learning-rate schedules and stopping rules; scikit-learn's own MLP test file passes against them
(``tests/test_sklearn_suite.py``) except for the tests that read its private internals. Beyond
scikit-learn's MLP, they support the Array API: under ``sklearn.config_context(array_api_dispatch=True)``
they train on the namespace and device of ``X`` (PyTorch, CuPy, JAX, array-api-strict) and answer
in it. Import this module only when scikit-learn is installed (``pip install 'flatnet_xp[sklearn]'``).

Remaining differences from scikit-learn's MLP, all deliberate:

* Adam follows ``torch.optim`` (and the paper): ``epsilon`` is added to ``sqrt(v_hat)``;
  scikit-learn adds it to ``sqrt(v)`` before the bias correction, an ``epsilon`` larger by
  ``1 / sqrt(1 - beta_2 ** t)`` in the first steps.
* SGD momentum follows ``torch.optim``: the current learning rate scales the momentum buffer; with
  ``invscaling``/``adaptive`` scikit-learn's velocity keeps each step's own rate (identical with a
  constant rate).
* L2: each batch's weight gradient gets ``alpha / (batch_size * mean sample weight) * W``;
  scikit-learn divides by that batch's own weight sum, so the last, smaller batch of an epoch (and
  batches of unequal weights) differ slightly. L-BFGS is exact. ``loss_curve_`` adds the L2 term
  with the weights at the epoch's end (scikit-learn: before each batch).
* Shuffling draws each epoch's order from a seed taken from ``random_state`` (not scikit-learn's
  stream), so that ``partial_fit`` called ``k`` times trains exactly as ``fit(max_iter=k)``.
* Multi-output squared error under L-BFGS minimises ``0.5 * n_outputs * mean`` (whose gradient is
  scikit-learn's) where scikit-learn hands scipy the value ``0.5 * mean`` with that gradient.
* ``partial_fit`` is absent with ``solver="lbfgs"`` for the regressor too; ``solver="adamw"`` and
  ``activation="leaky_relu"`` are flatnet_xp's additions.
"""

from flatnet_xp.sklearn._classifier import FlatMLPClassifier
from flatnet_xp.sklearn._regressor import FlatMLPRegressor

__all__ = ["FlatMLPClassifier", "FlatMLPRegressor"]
