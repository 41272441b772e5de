"""``FlatMLPClassifier``: scikit-learn's ``MLPClassifier`` on one flat parameter buffer."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from flatnet_xp.backends import array_namespace, to_numpy
from flatnet_xp.sklearn._base import FlatMLPBase
from flatnet_xp.sklearn._namespace import is_host_input, like_input
from flatnet_xp.sklearn._params import stochastic
from flatnet_xp.sklearn._plan import Targets

__all__ = ["FlatMLPClassifier"]


class FlatMLPClassifier(ClassifierMixin, FlatMLPBase):
    """Multilayer perceptron classifier on one flat parameter buffer: ``MLPClassifier``'s interface.

    Binary problems get one logistic output (binary cross-entropy), multiclass problems a softmax
    output (cross-entropy), multilabel indicator targets one logistic output per label; labels may be
    of any type (strings included). Trained with scikit-learn's losses, initial weights, L2 penalty,
    learning-rate schedules and stopping rules, so the same parameters behave the same.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Widths of the hidden layers.
    activation : {"relu", "logistic", "tanh", "identity", "leaky_relu"}, default "relu"
        Hidden-layer activation (``leaky_relu``, slope 0.01, is flatnet_xp's).
    class_weight : dict, "balanced" or None, default None
        flatnet_xp's addition, as scikit-learn's classifiers define it: weights ``{label: weight}``
        (multilabel: a list of dicts, one per label), or "balanced" for
        ``n_samples / (n_classes * np.bincount(y))``; each sample's weight
        (``sklearn.utils.class_weight.compute_sample_weight``) multiplies its ``sample_weight``.
        "balanced" is refused by ``partial_fit`` (it needs all the data).
    solver : {"adam", "sgd", "lbfgs", "adamw"}, default "adam"
        ``adamw`` (flatnet_xp's) is Adam with decoupled weight decay ``alpha``.
    alpha : float, default 1e-4
        L2 penalty on the weights (biases exempt).
    batch_size : int or "auto", default "auto"
        ``min(200, n_samples)`` for "auto"; clipped to the number of samples. Not used by lbfgs.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        sgd's schedule, changed at epoch ends: ``invscaling`` is
        ``learning_rate_init / (t_ + 1) ** power_t`` (``t_`` counts samples), ``adaptive`` divides
        the rate by 5 whenever training stops improving and ends it below 1e-6.
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5
    max_iter : int, default 200
        Epochs (stochastic solvers) or iterations (lbfgs).
    shuffle : bool, default True
    random_state : int, RandomState or None
        Initial weights (equal to scikit-learn's for the same value), validation split, shuffling.
    tol : float, default 1e-4
    verbose : bool or int, default False
        Print scikit-learn's per-epoch lines on stdout.
    warm_start : bool, default False
    momentum : float, default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified for binary problems), stop when its
        accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs, keep the best weights.
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam's.
    n_iter_no_change : int or numpy.inf, default 10
    max_fun : int, default 15000
        Largest number of loss evaluations of lbfgs.
    backend : str, namespace or "auto", default "auto"
        flatnet_xp backend to train on; "auto" follows the input (NumPy, or under
        ``sklearn.config_context(array_api_dispatch=True)`` the namespace and device of ``X``).
    dtype : {None, "float32", "float64"}, default None
        None follows the input: float32 data gives float32 weights and outputs, anything else float64.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    net_ : FlatMLP
        The network; ``coefs_`` and ``intercepts_`` are views of its flat buffer.
    coefs_, intercepts_ : list of arrays
        Layer weights ``(n_in, n_out)`` and biases, views of ``net_.w`` and ``net_.b``.
    loss_ : float
        The last loss (scikit-learn's value, with its L2 term).
    loss_curve_ : list of float
        One loss per epoch, appended across ``warm_start`` and ``partial_fit`` calls (stochastic solvers).
    best_loss_ : float or None
        Smallest training loss (None with early stopping).
    validation_scores_ : list of float or None
        Validation accuracy per epoch with early stopping, else None.
    validation_loss_curve_ : list of float or None
        flatnet_xp's: with early stopping, the loss of ``loss_curve_`` on the held-out samples per
        epoch (data loss plus the same L2 term, weights at the epoch's end), else None.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs (or lbfgs iterations) of the last call.
    t_ : int
        Training samples seen in all.
    n_features_in_, feature_names_in_ : as in scikit-learn
    n_layers_, n_outputs_ : int
    out_activation_ : {"logistic", "softmax"}

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from flatnet_xp.sklearn import FlatMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = FlatMLPClassifier((16,), solver="lbfgs", random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    _label_binarizer: LabelBinarizer
    classes_: np.ndarray

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        class_weight: Any = None,
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
        self.class_weight = class_weight

    def _targets(self, y: Any, *, first: bool, incremental: bool) -> Targets:
        y = np.asarray(to_numpy(y))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or not (self.warm_start or incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to "
                        f"fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")  # fmt: skip
        kind = self._label_binarizer.y_type_
        if kind == "multiclass":
            return Targets(np.searchsorted(self.classes_, y), "log_loss", "softmax", len(self.classes_))
        T = self._label_binarizer.transform(y).astype(np.float64)
        k = int(T.shape[1])
        stratify = T > 0.5 if k == 1 else None  # scikit-learn stratifies single-output problems only
        return Targets(T[:, 0] if k == 1 else T, "binary_log_loss", "logistic", k, stratify)

    def _check_params(self) -> tuple[int, ...]:
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight: expected None, 'balanced' or a dict {{label: weight}}, got {cw!r}")
        return super()._check_params()

    def _class_weights(self, y: Any, incremental: bool) -> np.ndarray | None:
        """scikit-learn's ``compute_sample_weight(class_weight, y)``: one weight per sample, or None."""
        if self.class_weight is None:
            return None
        if incremental and isinstance(self.class_weight, str):
            raise ValueError(
                "class_weight: 'balanced' needs all the data at once and is not supported by partial_fit; "
                "pass a dict, e.g. from sklearn.utils.class_weight.compute_class_weight"
            )
        y = np.asarray(to_numpy(y))
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        try:
            return np.asarray(compute_sample_weight(self.class_weight, y), dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"class_weight: {exc}") from None

    def _partial_fit_first_call(self, y: Any, classes: Any) -> None:
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            y = np.asarray(to_numpy(y))
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FlatMLPClassifier:
        """Train on ``(X, y)``.

        Parameters
        ----------
        X : array or scipy.sparse matrix, shape (n_samples, n_features)
        y : array, shape (n_samples,) of labels, or (n_samples, n_labels) indicator matrix
        sample_weight : array, shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._fit(X, y, sample_weight, incremental=False)
        return self

    @available_if(stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> FlatMLPClassifier:
        """One epoch over ``(X, y)``; the first call needs ``classes`` (every label that will occur).

        Each call shuffles the samples afresh from ``random_state``, as scikit-learn's ``partial_fit`` does;
        without shuffling, ``k`` calls train exactly as ``fit`` with ``max_iter=k``.
        Not available with ``solver="lbfgs"``.
        """
        self._fit(X, y, sample_weight, incremental=True, classes=classes)
        return self

    def predict(self, X: Any) -> Any:
        """Labels of ``classes_``'s type, shape ``(n_samples,)`` (multilabel: an indicator matrix)."""
        X, proba = self._output(X, "predict")
        xp = self.net_.xp
        with self._precision():  # JAX float64 outputs: reduced inside the x64 scope
            if self._label_binarizer.y_type_ == "multilabel-indicator":
                return like_input(np.asarray(to_numpy(proba > 0.5)).astype(np.int64), X)
            codes = xp.argmax(proba, axis=1) if proba.shape[1] > 1 else proba[:, 0] > 0.5
            index = np.asarray(to_numpy(codes)).astype(np.intp)
        labels = self.classes_[np.minimum(index, len(self.classes_) - 1)]  # one class: always that one
        if not is_host_input(X) and labels.dtype.kind in "biuf":
            return like_input(labels, X)
        return labels

    def _proba(self, X: Any, method: str) -> tuple[Any, Any]:
        X, proba = self._output(X, method)
        if proba.shape[1] == 1 and self._label_binarizer.y_type_ != "multilabel-indicator":
            with self._precision():  # JAX float64: 1 - p in float64
                proba = self.net_.xp.concat((1.0 - proba, proba), axis=1)
        return X, proba

    def predict_proba(self, X: Any) -> Any:
        """Probabilities, shape ``(n_samples, n_classes)`` in ``classes_`` order (per label for multilabel)."""
        X, proba = self._proba(X, "predict_proba")
        return like_input(proba, X)

    def predict_log_proba(self, X: Any) -> Any:
        """``log(predict_proba(X))``."""
        X, proba = self._proba(X, "predict_log_proba")
        with np.errstate(divide="ignore"), self._precision():
            return like_input(array_namespace(proba).log(proba), X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
