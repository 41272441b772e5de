"""scikit-learn estimators backed by the flat network: ``FlatMLPClassifier`` and ``FlatMLPRegressor``.

Drop-in for ``MLPClassifier`` / ``MLPRegressor`` where the parameters mean the same thing, on any
flatnet_xp backend; they pass scikit-learn's own estimator checks (``parametrize_with_checks``).
Import this module only when scikit-learn is installed (``pip install 'flatnet_xp[sklearn]'``).

Differences from scikit-learn's MLP, all deliberate and documented:

* ``alpha`` is the same L2 penalty (``alpha / batch_size * W`` added to each batch's weight
  gradient, biases exempt); with ``solver="adamw"`` it is AdamW's decoupled weight decay instead.
* Stopping: training stops after ``n_iter_no_change`` epochs without an improvement of more than
  ``tol`` in the training loss (or the validation loss with ``early_stopping=True``), and the best
  weights seen are restored. scikit-learn monitors the validation *score* and keeps the last
  weights when it monitors the training loss.
* Binary classification uses one logistic output (as scikit-learn does), multiclass a softmax.
* With ``backend="cupy"`` (or torch on CUDA) NumPy input gives NumPy results and device input
  gives device results.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from flatnet_xp._compat import get_backend, to_numpy
from flatnet_xp.activations import sigmoid
from flatnet_xp.losses import softmax
from flatnet_xp.network import FlatMLP
from flatnet_xp.optim import SGD, Adam, AdamW, Optimizer

__all__ = ["FlatMLPClassifier", "FlatMLPRegressor"]

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "leaky_relu": "leaky_relu"}  # fmt: skip
_SOLVERS = ("sgd", "adam", "adamw")


def _is_device_array(X: Any) -> bool:
    mod = type(X).__module__
    return mod.startswith("cupy") or (mod.startswith("torch") and getattr(X, "is_cuda", False))


class _FlatMLPBase(BaseEstimator):
    """Shared parameters, validation and training of the two estimators."""

    _loss: str = "mse"
    net_: FlatMLP

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] | list[int] | int = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | None = None,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        momentum: float = 0.9,
        warm_start: bool = False,
        verbose: bool = False,
        backend: str = "numpy",
        dtype: str = "float64",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.momentum = momentum
        self.warm_start = warm_start
        self.verbose = verbose
        self.backend = backend
        self.dtype = dtype

    # ------------------------------------------------------------------ parameter checks
    def _check_params(self) -> tuple[int, ...]:
        given: Any = self.hidden_layer_sizes
        hidden: tuple[Any, ...] = (given,) if isinstance(given, numbers.Integral) else tuple(given)
        if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and int(h) > 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes: expected positive integers, got {self.hidden_layer_sizes!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {_SOLVERS}, got {self.solver!r}")
        for name, low in (("max_iter", 1), ("n_iter_no_change", 1)):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto") and not (
            isinstance(self.batch_size, numbers.Integral) and self.batch_size >= 1
        ):
            raise ValueError(f"batch_size: expected 'auto' or an integer >= 1, got {self.batch_size!r}")
        for name, lo, hi in (("alpha", 0.0, np.inf), ("learning_rate_init", 0.0, np.inf), ("tol", 0.0, np.inf),
                             ("momentum", 0.0, 1.0)):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or not lo <= float(v) <= hi or (name == "learning_rate_init" and v <= 0):
                raise ValueError(f"{name}: expected a number in [{lo}, {hi}], got {v!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction: expected a number in (0, 1), got {self.validation_fraction!r}")
        return tuple(int(h) for h in hidden)

    def _optimizer(self, batch: int) -> Optimizer:
        lr = float(self.learning_rate_init)
        l2 = float(self.alpha) / batch
        if self.solver == "sgd":
            return SGD(lr=lr, momentum=float(self.momentum), nesterov=self.momentum > 0, weight_decay=l2)
        if self.solver == "adamw":
            return AdamW(lr=lr, weight_decay=float(self.alpha))
        return Adam(lr=lr, weight_decay=l2)

    # ------------------------------------------------------------------ input handling
    def _validate(self, X: Any, y: Any = "no_validation", reset: bool = True) -> tuple[Any, Any]:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        if isinstance(y, str) and y == "no_validation":
            y = None
        if _is_device_array(X):
            if reset:
                self.n_features_in_ = int(X.shape[1])
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} expects {self.n_features_in_}"
                )
            return X, (to_numpy(y) if y is not None and _is_device_array(y) else y)
        if y is None:
            return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32]), None
        return validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32], multi_output=True,
                             y_numeric=self._loss == "mse")  # fmt: skip

    def _out(self, arr: Any, like: Any) -> Any:
        """Results in the kind of array the caller passed: device input -> device output, else NumPy."""
        return arr if _is_device_array(like) else np.asarray(to_numpy(arr))

    # ------------------------------------------------------------------ training
    def _new_net(self, n_features: int, n_outputs: int) -> FlatMLP:
        hidden = self._check_params()
        get_backend(self.backend)  # clear error for an unusable backend before any work
        sizes = [n_features, *hidden, n_outputs]
        acts = [_ACTIVATIONS[self.activation]] * len(hidden) + ["identity"]
        seed = _seed(self.random_state)
        return FlatMLP(sizes, acts, backend=self.backend, dtype=self.dtype, seed=seed)

    def _train(self, X: Any, T: Any, epochs: int, incremental: bool) -> None:
        n = int(X.shape[0])
        batch = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        if not incremental or not hasattr(self, "_opt"):
            self._opt = self._optimizer(batch)
        seed = _seed(self.random_state)
        kwargs: dict[str, Any] = dict(epochs=epochs, batch_size=batch, optimizer=self._opt, loss=self._loss,
                                      shuffle=bool(self.shuffle), progress=bool(self.verbose))  # fmt: skip
        if not incremental:
            kwargs["patience"] = int(self.n_iter_no_change)
            kwargs["min_delta"] = float(self.tol)
        if self.early_stopping and not incremental:
            stratify = T if self._loss != "mse" and T.ndim == 1 else None
            try:
                X, Xv, T, Tv = train_test_split(X, T, test_size=self.validation_fraction, random_state=seed,
                                                stratify=stratify)  # fmt: skip
            except ValueError:  # a class too small to stratify
                X, Xv, T, Tv = train_test_split(X, T, test_size=self.validation_fraction, random_state=seed)
            kwargs["validation_data"] = (Xv, Tv)
        # Each call draws a fresh shuffle stream from random_state and the number of epochs run so far.
        kwargs["seed"] = None if seed is None else seed + 7919 * getattr(self, "n_iter_", 0)
        hist = self.net_.fit(X, T, **kwargs)
        self.loss_curve_ = [*getattr(self, "loss_curve_", []), *hist.loss] if incremental else list(hist.loss)
        self.n_iter_ = getattr(self, "n_iter_", 0) + hist.epochs if incremental else hist.epochs
        self.best_loss_ = float(np.min(self.loss_curve_))
        if hist.val_loss:
            self.validation_scores_ = list(hist.val_loss)
        self.t_ = self._opt.t * batch
        if not incremental and not hist.stopped_early and epochs == self.max_iter:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and the optimization hasn't "
                "converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _fit(self, X: Any, T: Any, incremental: bool) -> _FlatMLPBase:
        n_out = self._n_outputs(T)
        fresh = not hasattr(self, "net_") or not (self.warm_start or incremental)
        if not fresh and (self.net_.layout.sizes[0] != X.shape[1] or self.net_.layout.sizes[-1] != n_out):
            raise ValueError(
                f"X has {X.shape[1]} features and y {n_out} outputs, but the fitted network expects "
                f"{self.net_.layout.sizes[0]} and {self.net_.layout.sizes[-1]}"
            )
        if fresh:
            for attr in ("loss_curve_", "n_iter_", "_opt", "validation_scores_"):
                self.__dict__.pop(attr, None)
            self.net_ = self._new_net(int(X.shape[1]), n_out)
        self._train(X, T, 1 if incremental else int(self.max_iter), incremental)
        return self

    def _n_outputs(self, T: Any) -> int:
        return 1 if T.ndim == 1 else int(T.shape[1])

    @property
    def coefs_(self) -> list[Any]:
        """Weight matrices, ``(n_in, n_out)`` like scikit-learn: transposed VIEWS of the flat ``w``."""
        check_is_fitted(self, "net_")
        xp = self.net_.xp
        return [xp.matrix_transpose(self.net_.weight(k)) for k in range(self.net_.layout.n_layers)]

    @property
    def intercepts_(self) -> list[Any]:
        """Bias vectors: views of the flat ``b``."""
        check_is_fitted(self, "net_")
        return [self.net_.bias(k) for k in range(self.net_.layout.n_layers)]

    @property
    def n_layers_(self) -> int:
        check_is_fitted(self, "net_")
        return len(self.net_.layout.sizes)

    @property
    def n_outputs_(self) -> int:
        check_is_fitted(self, "net_")
        return int(self.net_.layout.sizes[-1])

    def _raw(self, X: Any) -> Any:
        check_is_fitted(self, "net_")
        X, _ = self._validate(X, "no_validation", reset=False)
        return self.net_.predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


def _seed(random_state: Any) -> int | None:
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state: expected None, an int or a NumPy random state, got {random_state!r}")


class FlatMLPClassifier(ClassifierMixin, _FlatMLPBase):
    """Multilayer perceptron classifier on one flat parameter buffer (``MLPClassifier``'s interface).

    Binary problems get one logistic output trained with binary cross-entropy; multiclass problems
    a softmax output trained with cross-entropy. Labels may be of any type (strings included).

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate_init, max_iter, shuffle,
    random_state, tol, early_stopping, validation_fraction, n_iter_no_change, momentum, warm_start,
    verbose
        As in :class:`sklearn.neural_network.MLPClassifier` (``solver`` in ``sgd, adam, adamw``).
    backend : str, default "numpy"
        flatnet_xp backend: ``numpy``, ``cupy``, ``torch``, ``array_api_strict``.
    dtype : {"float64", "float32"}, default "float64"

    Attributes
    ----------
    net_ : FlatMLP
    classes_ : ndarray of shape (n_classes,)
    n_features_in_, feature_names_in_ : as in scikit-learn
    loss_curve_ : list of float
    best_loss_ : float
    n_iter_ : int
    coefs_, intercepts_ : list of arrays
        Views of the network's flat ``w`` and ``b`` (coefs ``(n_in, n_out)``).
    """

    def _encode(self, y: Any, reset: bool) -> np.ndarray:
        y = to_numpy(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                "to (n_samples,), for example using ravel().",
                DataConversionWarning,
                stacklevel=3,
            )
        y = column_or_1d(y)
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y)
            if self.classes_.shape[0] < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data; got 1 class: "
                    f"{self.classes_[0]!r}"
                )
        elif not np.all(np.isin(y, self.classes_)):
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            raise ValueError(
                f"y contains labels {unknown.tolist()} not seen in the first fit: {self.classes_.tolist()}"
            )
        codes = np.searchsorted(self.classes_, y)
        return codes.astype(np.float64) if len(self.classes_) == 2 else codes

    @property
    def _loss(self) -> str:  # type: ignore[override]
        return "bce" if len(getattr(self, "classes_", ())) == 2 else "cross_entropy"

    def fit(self, X: Any, y: Any) -> FlatMLPClassifier:
        """Train on ``(X, y)``; ``y`` holds class labels of any type. Returns self."""
        self._check_params()
        X, y = self._validate(X, y, reset=True)
        T = self._encode(y, reset=True)
        return self._fit(X, T, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> FlatMLPClassifier:
        """One epoch over ``(X, y)``; the first call needs ``classes`` (all labels that will occur)."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes: the first call to partial_fit needs the list of all classes")
        if first:
            self._check_params()
            self.classes_ = np.unique(to_numpy(classes))
            if self.classes_.shape[0] < 2:
                raise ValueError("classes: expected at least 2 classes")
        elif classes is not None and not np.array_equal(np.unique(to_numpy(classes)), self.classes_):
            raise ValueError(f"classes: {classes!r} differs from the first call's {self.classes_.tolist()}")
        X, y = self._validate(X, y, reset=first)
        T = self._encode(y, reset=False)
        return self._fit(X, T, incremental=True)

    def _n_outputs(self, T: Any) -> int:
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, shape ``(n_samples, n_classes)``, columns in ``classes_`` order."""
        z = self._raw(X)
        xp = self.net_.xp
        if len(self.classes_) == 2:
            p1 = sigmoid(xp, z)
            proba = xp.concat([1.0 - p1, p1], axis=1)
        else:
            proba = softmax(xp, z)
        return self._out(proba, X)

    def predict_log_proba(self, X: Any) -> Any:
        return np.log(np.asarray(to_numpy(self.predict_proba(X))))

    def predict(self, X: Any) -> Any:
        """Predicted labels (of ``classes_``'s type), shape ``(n_samples,)``."""
        z = self._raw(X)
        codes = to_numpy(self.net_.xp.argmax(z, axis=1) if z.shape[1] > 1 else z[:, 0] > 0).astype(np.int64)
        labels = self.classes_[codes]
        if _is_device_array(X) and labels.dtype.kind in "biuf":
            return self.net_._be.asarray(labels)
        return labels

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class FlatMLPRegressor(RegressorMixin, _FlatMLPBase):
    """Multilayer perceptron regressor on one flat parameter buffer (``MLPRegressor``'s interface).

    Linear output layer, mean squared error; ``y`` of shape ``(n,)`` or ``(n, n_outputs)``.
    Parameters and attributes as :class:`FlatMLPClassifier` (no ``classes_``).
    """

    _loss = "mse"

    def fit(self, X: Any, y: Any) -> FlatMLPRegressor:
        """Train on ``(X, y)``. Returns self."""
        self._check_params()
        X, y = self._validate(X, y, reset=True)
        self._y_1d = np.ndim(y) == 1
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> FlatMLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current weights."""
        first = not hasattr(self, "net_")
        if first:
            self._check_params()
        X, y = self._validate(X, y, reset=first)
        if first:
            self._y_1d = np.ndim(y) == 1
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> Any:
        """Predictions, shape ``(n_samples,)`` for 1-D training targets, else ``(n_samples, n_outputs)``."""
        z = self._raw(X)
        out = z[:, 0] if self._y_1d else z
        return self._out(out, X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
