"""``FlatMLPRegressor``: scikit-learn's ``MLPRegressor`` on one flat parameter buffer."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d

from flatnet_xp.backends import to_numpy
from flatnet_xp.sklearn._base import FlatMLPBase
from flatnet_xp.sklearn._ensemble import ensemble_outputs
from flatnet_xp.sklearn._namespace import like_input
from flatnet_xp.sklearn._params import check_choice, stochastic
from flatnet_xp.sklearn._plan import Targets

__all__ = ["FlatMLPRegressor"]

_REGRESSION_LOSSES = ("squared_error", "poisson")


class FlatMLPRegressor(RegressorMixin, FlatMLPBase):
    """Multilayer perceptron regressor on one flat parameter buffer: ``MLPRegressor``'s interface.

    A linear output layer trained with scikit-learn's squared error, or (``loss="poisson"``) a
    log-rate output trained with its half Poisson deviance, predicting ``exp(output)``. ``y`` of
    shape ``(n,)`` or ``(n, n_outputs)``.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default "squared_error"
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init, \
power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum, \
early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun, backend, dtype
        As for :class:`FlatMLPClassifier` (early stopping monitors the validation R^2, unstratified).

    Attributes
    ----------
    net_, coefs_, intercepts_, loss_, loss_curve_, best_loss_, validation_scores_, \
validation_loss_curve_, best_validation_score_, n_iter_, t_, n_features_in_, feature_names_in_, n_layers_, n_outputs_
        As for :class:`FlatMLPClassifier` (validation scores are R^2).
    out_activation_ : {"identity", "exp"}

    Examples
    --------
    >>> import numpy as np
    >>> from flatnet_xp.sklearn import FlatMLPRegressor
    >>> X = np.linspace(-1, 1, 50)[:, None]
    >>> reg = FlatMLPRegressor((16,), solver="lbfgs", random_state=0).fit(X, X[:, 0] ** 2)
    >>> reg.score(X, X[:, 0] ** 2) > 0.9
    True
    """

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        max_fun: int = 15000,
        backend: Any = "auto",
        dtype: Any = None,
        n_models: int = 1,
        bootstrap: bool = False,
    ) -> None:
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            backend=backend,
            dtype=dtype,
            n_models=n_models,
            bootstrap=bootstrap,
        )
        self.loss = loss

    def _check_params(self) -> tuple[int, ...]:
        check_choice(self, "loss", _REGRESSION_LOSSES)
        return super()._check_params()

    def _targets(self, y: Any, *, first: bool, incremental: bool) -> Targets:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        T = np.asarray(to_numpy(y), dtype=np.float64)
        n_outputs = 1 if T.ndim == 1 else int(T.shape[1])
        if self.loss == "poisson":
            if np.any(T < 0):
                raise ValueError(f"y: loss='poisson' needs non-negative targets, found {T.min()!r}")
            return Targets(T, "poisson", "exp", n_outputs)
        return Targets(T, "squared_error", "identity", n_outputs)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FlatMLPRegressor:
        """Train on ``(X, y)``.

        Parameters
        ----------
        X : array or scipy.sparse matrix, shape (n_samples, n_features)
        y : array, shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array, shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._fit(X, y, sample_weight, incremental=False)
        return self

    @available_if(stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> FlatMLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current weights (not with ``solver="lbfgs"``).

        Each call shuffles the samples afresh from ``random_state``, as scikit-learn's ``partial_fit`` does;
        without shuffling, ``k`` calls train exactly as ``fit`` with ``max_iter=k``.
        """
        self._fit(X, y, sample_weight, incremental=True)
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        """Predictions, shape ``(n_samples,)`` for one output, else ``(n_samples, n_outputs)``.

        With ``return_std=True`` (an ensemble, ``n_models > 1``) also the members' standard
        deviation around that mean, of the same shape (scikit-learn's convention for regressors
        that give an uncertainty).
        """
        if not isinstance(return_std, bool):
            raise TypeError(f"return_std: expected True or False, got {return_std!r}")
        if not return_std:
            X, out = self._output(X, "predict")
            return like_input(out[:, 0] if out.shape[1] == 1 else out, X)
        if self.n_models < 2:
            raise ValueError("return_std: the spread of an ensemble's members needs n_models > 1, got n_models=1")
        X, _ = self._output(X, "predict")
        with self._precision():
            mean, std = ensemble_outputs(self, X, return_std=True)
        if mean.shape[1] == 1:
            mean, std = mean[:, 0], std[:, 0]
        return like_input(mean, X), like_input(std, X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
