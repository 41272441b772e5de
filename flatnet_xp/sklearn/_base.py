"""The estimators' shared core: parameters, input validation, and ONE core ``fit`` call per fit.

A fit runs in two phases. The first checks everything (parameters, data, labels, sample weights,
the early-stopping split, values the network's dtype cannot hold) and builds the new network; an
error there leaves the estimator exactly as it was. The second commits and trains: stochastic solvers through one
:meth:`flatnet_xp.FlatMLP.fit` call whose per-epoch callback (:class:`~._monitor.EpochMonitor`) is
scikit-learn's end-of-iteration logic, L-BFGS through :class:`flatnet_xp.LBFGS`.
"""

from __future__ import annotations

import contextlib
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_regressor
from sklearn.model_selection import train_test_split
from sklearn.utils._array_api import get_namespace
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from flatnet_xp._data import _gather
from flatnet_xp._validation import check_dtype, check_finite, check_sample_weight
from flatnet_xp.activations import sigmoid
from flatnet_xp.backends import to_numpy
from flatnet_xp.history import DivergenceError
from flatnet_xp.losses import softmax
from flatnet_xp.network import FlatMLP
from flatnet_xp.sklearn._ensemble import ensemble_outputs, fit_members
from flatnet_xp.sklearn._losses import scikit_learn_loss
from flatnet_xp.sklearn._monitor import (
    EpochMonitor,
    EpochRate,
    SampleOrders,
    restore,
    snapshot,
    squared_weight_norm,
    subset_accuracy,
)
from flatnet_xp.sklearn._namespace import auto_backend, dispatching, is_device_array
from flatnet_xp.sklearn._optimizers import ScikitLearnAdam, ScikitLearnSGD, new_optimizer
from flatnet_xp.sklearn._params import ACTIVATIONS, STOCHASTIC_SOLVERS, check_params, random_state_of
from flatnet_xp.sklearn._plan import NONFINITE_MESSAGE, Plan, Targets, unchanged_on_error, warn_max_iter
from flatnet_xp.solvers import LBFGS

try:  # scikit-learn >= 1.9
    from sklearn.utils._array_api import check_same_namespace
except ImportError:  # pragma: no cover - older scikit-learn does not test it
    check_same_namespace = None

__all__ = ["NONFINITE_MESSAGE", "FlatMLPBase"]


#: Fitted state that a fresh (not warm-started) fit discards before setting its own.
_FIT_STATE = ("loss_curve_", "best_loss_", "validation_scores_", "validation_loss_curve_", "best_validation_score_",
              "loss_", "_optimizer", "_best_params", "_no_improvement_count", "ensemble_", "_ensemble_optimizer",
              "diverged_members_")  # fmt: skip


class FlatMLPBase(BaseEstimator):
    """Parameters, validation and training shared by the classifier and the regressor."""

    net_: FlatMLP
    n_iter_: int
    t_: int
    loss_curve_: list[float]
    best_loss_: float | None
    validation_scores_: list[float] | None
    validation_loss_curve_: list[float] | None
    best_validation_score_: float | None
    loss_: float
    _best_params: Any
    _no_improvement_count: int

    def __init__(
        self,
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
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.n_models = n_models
        self.bootstrap = bootstrap

    # ------------------------------------------------------------------ parameters
    def _check_params(self) -> tuple[int, ...]:
        """Check every parameter (ValueError/TypeError naming it); returns the hidden layer sizes."""
        return check_params(self)

    # ------------------------------------------------------------------ input handling
    def _validate(self, X: Any, y: Any = None, *, reset: bool, fitting: bool = False) -> tuple[Any, Any]:
        """scikit-learn's ``validate_data`` (sparse CSR/CSC, float64 or float32, the input's namespace)."""
        if is_device_array(X) and not dispatching():
            return self._validate_device(X, y, reset=reset)
        xp, _ = get_namespace(X)
        kwargs: dict[str, Any] = dict(reset=reset, accept_sparse=["csr", "csc"], dtype=(xp.float64, xp.float32))
        if not fitting:
            return validate_data(self, X, **kwargs), None
        return validate_data(self, X, y, multi_output=True, y_numeric=is_regressor(self), **kwargs)

    def _validate_device(self, X: Any, y: Any, *, reset: bool) -> tuple[Any, Any]:
        """Device arrays with array API dispatch off: used as they are (the core checks the values)."""
        if len(X.shape) != 2:
            raise ValueError(f"X: expected a 2-D array, got shape {tuple(X.shape)}")
        if reset:
            self.n_features_in_ = int(X.shape[1])
            self.__dict__.pop("feature_names_in_", None)
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} features "
                "as input."
            )
        return X, None if y is None else np.asarray(to_numpy(y))

    def _targets(self, y: Any, *, first: bool, incremental: bool) -> Targets:
        raise NotImplementedError

    def _class_weights(self, y: Any, incremental: bool) -> np.ndarray | None:
        """Hook: the classifier's per-sample ``class_weight`` factors (None: no class weights)."""
        return None

    def _partial_fit_first_call(self, y: Any, classes: Any) -> None:
        """Hook: the classifier sets up its classes on the first ``partial_fit``."""

    # ------------------------------------------------------------------ fitting
    def _fit(self, X: Any, y: Any, sample_weight: Any, *, incremental: bool, classes: Any = None) -> None:
        with unchanged_on_error(self):
            if incremental:
                self._partial_fit_first_call(y, classes)
            plan = self._prepare(X, y, sample_weight, incremental)
        # Targets and validation data become backend arrays in the network's precision (JAX
        # float64 exists only inside its scope: outside it they would be truncated to 32 bits).
        with plan.net.flat_params.backend.precision(plan.net.dtype_name):
            if plan.first:
                self._initialize(plan)
            if self.n_models > 1:
                fit_members(self, plan, incremental)
            elif self.solver == "lbfgs":
                self._fit_lbfgs(plan)
            else:
                self._fit_stochastic(plan, incremental)

    def _prepare(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> Plan:
        """Phase one: check everything and build what training needs (the caller undoes any change)."""
        hidden = self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "net_") or not (self.warm_start or incremental)
        X, y = self._validate(X, y, reset=first, fitting=True)
        targets = self._targets(y, first=first, incremental=incremental)
        sw = None
        if sample_weight is not None:
            sw = np.asarray(to_numpy(_check_sample_weight(sample_weight, X)), dtype=np.float64)
            check_sample_weight("sample_weight", sw, int(X.shape[0]))  # finite, >= 0, one positive
        class_weights = self._class_weights(y, incremental)
        if class_weights is not None:
            sw = class_weights if sw is None else sw * class_weights
            check_sample_weight("class_weight", sw, int(X.shape[0]))
        dtype_name = self._dtype_name(X) if first else self.net_.dtype_name
        # The values must fit the network's dtype (1e39 does not fit float32): named here, before
        # the network or any fitted attribute changes, not as "non-finite" once converted.
        check_finite("X", X, np.dtype(dtype_name))
        check_finite("y", targets.T, np.dtype(dtype_name))
        rs = random_state_of(self)
        sizes = (int(X.shape[1]), *hidden, targets.n_outputs)
        if first:
            net = self._new_net(X, sizes, rs, dtype_name)
        else:
            net = self.net_
            if tuple(net.layout.sizes) != sizes:
                raise ValueError(
                    f"warm_start: the fitted network has layer sizes {list(net.layout.sizes)}, but "
                    f"hidden_layer_sizes and the data call for {list(sizes)}; set warm_start=False to start afresh"
                )
        T, val = targets.T, None
        if self.solver in STOCHASTIC_SOLVERS and self.early_stopping:
            train, test = train_test_split(np.arange(X.shape[0]), random_state=rs,
                                           test_size=self.validation_fraction, stratify=targets.stratify)  # fmt: skip
            if test.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            val = (_gather(X, test), T[test], None if sw is None else sw[test])
            X, T, sw = _gather(X, train), T[train], None if sw is None else sw[train]
        # scikit-learn's sample orders, drawn after the initial weights and the split; like
        # scikit-learn, each partial_fit draws its order afresh from check_random_state(random_state).
        orders = SampleOrders(rs)
        n = int(X.shape[0])
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if int(self.batch_size) > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=4
                )
            batch = min(int(self.batch_size), n)
        return Plan(first, net, orders, X, T, sw, val, batch, targets)

    def _dtype_name(self, X: Any) -> str:
        """The new network's dtype: ``dtype``, else float32 for float32 data and float64 otherwise."""
        if self.dtype is not None:
            return check_dtype(self.dtype)
        try:
            return check_dtype(X.dtype)
        except TypeError:
            return "float64"

    def _new_net(self, X: Any, sizes: tuple[int, ...], rs: np.random.RandomState, dtype: str) -> FlatMLP:
        """scikit-learn's initial weights (the same for the same ``random_state``) on the chosen backend."""
        backend, device = auto_backend(X) if isinstance(self.backend, str) and self.backend == "auto" else (
            self.backend, None)  # fmt: skip
        n_hidden = len(sizes) - 2
        acts = [ACTIVATIONS[self.activation]] * n_hidden + ["identity"]
        return FlatMLP(sizes, acts, backend=backend, device=device, dtype=dtype, seed=rs, init="sklearn")

    def _initialize(self, plan: Plan) -> None:
        """A fresh fit: the new network and scikit-learn's initial attributes."""
        for attr in _FIT_STATE:
            self.__dict__.pop(attr, None)
        self.net_ = plan.net
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = plan.targets.n_outputs
        self.n_layers_ = len(plan.net.layout.sizes)
        self.out_activation_ = plan.targets.out_activation

    def _monitor_state(self) -> None:
        """The stopping rules' state, created where a fit (or a warm start with other settings) lacks it."""
        if not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
        if self.early_stopping:
            if getattr(self, "validation_scores_", None) is None:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
                self._best_params = snapshot(self.net_)
            if getattr(self, "validation_loss_curve_", None) is None:
                self.validation_loss_curve_ = []
        elif getattr(self, "best_loss_", None) is None:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None

    def _fit_stochastic(self, plan: Plan, incremental: bool) -> None:
        """sgd/adam/adamw: ONE core ``fit`` call; scikit-learn's per-epoch logic runs in its callback.

        L2: scikit-learn adds ``alpha * W / sum(batch weights)`` to each batch's weight gradient; the
        optimizer adds ``alpha * W / (batch size * mean weight)``: the same without sample weights.
        """
        net, n = self.net_, int(plan.X.shape[0])
        mean_weight = 1.0 if plan.sample_weight is None else float(np.mean(plan.sample_weight))
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = new_optimizer(self)
        if isinstance(self._optimizer, ScikitLearnSGD | ScikitLearnAdam):
            self._optimizer.set_l2(float(self.alpha), plan.batch_size, n, mean_weight)
        self._monitor_state()
        loss, factor = scikit_learn_loss(plan.targets.loss, plan.targets.n_outputs)
        n_batches = -(-n // plan.batch_size)
        l2 = 0.0 if self.solver == "adamw" else 0.5 * float(self.alpha) * n_batches / (n * mean_weight)
        rate = self._optimizer.lr
        assert isinstance(rate, EpochRate)
        monitor = EpochMonitor(self, rate, n, factor, l2, weight_norm=squared_weight_norm(net) if l2 else 0.0,
                               interpolation=(n_batches - 1) / (2 * n_batches))  # fmt: skip
        validation_data = None
        if plan.val is not None:
            Xv, Tv, swv = plan.val
            Tv_backend = net.flat_params.backend.asarray(Tv, dtype=net.dtype if Tv.dtype.kind == "f" else None)
            validation_data = (Xv, Tv_backend, swv)  # the core records the held-out loss (and score)
            if plan.targets.loss == "binary_log_loss" and plan.targets.n_outputs > 1:  # multilabel: subset accuracy
                monitor.val_score = lambda net, history: subset_accuracy(net, Xv, Tv_backend, swv)
            else:
                monitor.val_score = lambda net, history: history.val_score[-1]
        T = net.flat_params.backend.asarray(plan.T, dtype=net.dtype if plan.T.dtype.kind == "f" else None)
        self._orders = plan.orders
        self.n_iter_ = 0
        try:
            net.fit(plan.X, T, epochs=1 if incremental else int(self.max_iter), batch_size=plan.batch_size,
                    optimizer=self._optimizer, loss=loss, sample_weight=plan.sample_weight,
                    shuffle=plan.orders if self.shuffle else False, validation_data=validation_data,
                    callbacks=[monitor], progress=False)  # fmt: skip
        except DivergenceError as exc:
            if not self.early_stopping:
                raise ValueError(NONFINITE_MESSAGE) from exc
            monitor.diverged(net)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if self.early_stopping:
            restore(net, self._best_params)
        if not incremental and not monitor.stopped and self.n_iter_ == self.max_iter:
            warn_max_iter(self.max_iter, stacklevel=4)  # the caller of fit

    def _fit_lbfgs(self, plan: Plan) -> None:
        """Full-batch L-BFGS (scipy's L-BFGS-B on the flat buffer), scikit-learn's objective exactly."""
        net = self.net_
        weight_total = float(plan.X.shape[0]) if plan.sample_weight is None else float(np.sum(plan.sample_weight))
        solver = LBFGS(max_iter=int(self.max_iter), max_fun=int(self.max_fun), tol=float(self.tol),
                       weight_decay=float(self.alpha) / weight_total)  # fmt: skip
        loss, factor = scikit_learn_loss(plan.targets.loss, plan.targets.n_outputs)
        T = net.flat_params.backend.asarray(plan.T, dtype=net.dtype if plan.T.dtype.kind == "f" else None)
        try:
            history = net.fit(plan.X, T, optimizer=solver, loss=loss, sample_weight=plan.sample_weight, progress=False)
        except DivergenceError as exc:
            raise ValueError(NONFINITE_MESSAGE) from exc
        l2 = 0.5 * solver.weight_decay * squared_weight_norm(net) if solver.weight_decay else 0.0
        self.loss_ = (history.batch_loss[-1] - l2) * factor + l2
        status = 0 if solver.converged_ else 1 if "LIMIT" in solver.message_.upper() else 2
        result = SimpleNamespace(nit=solver.n_iter_, status=status, message=solver.message_)
        self.n_iter_ = _check_optimize_result("lbfgs", result, int(self.max_iter))

    # ------------------------------------------------------------------ prediction
    @property
    def _fitted_params(self) -> Any:
        """The flat parameter buffer: its namespace and device are those ``fit`` saw."""
        return self.net_.params

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        """The scope in which the fitted network's arrays keep their dtype (JAX float64)."""
        return self.net_.flat_params.backend.precision(self.net_.dtype_name)

    def _output(self, X: Any, method: str) -> tuple[Any, Any]:
        """The validated ``X`` and the output layer's activations (scikit-learn's ``out_activation_``)."""
        check_is_fitted(self, "net_")
        X, _ = self._validate(X, reset=False)
        if check_same_namespace is not None and isinstance(self.backend, str) and self.backend == "auto":
            check_same_namespace(X, self, attribute="_fitted_params", method=method)
        net = self.net_
        xp = net.xp
        if self.n_models > 1 and hasattr(self, "ensemble_"):
            with self._precision():
                return X, ensemble_outputs(self, X)
        with self._precision():
            z = net.predict(X)
            if self.out_activation_ == "exp":
                z = xp.exp(z)
            elif self.out_activation_ == "logistic":
                z = sigmoid(xp, z)
            elif self.out_activation_ == "softmax":
                z = softmax(xp, z)
        return X, z

    @property
    def coefs_(self) -> list[Any]:
        """Weight matrices ``(n_in, n_out)`` as scikit-learn lays them out: transposed VIEWS of ``net_.w``."""
        check_is_fitted(self, "net_")
        xp = self.net_.xp
        return [xp.matrix_transpose(self.net_.weight(k)) for k in range(self.net_.layout.n_layers)]

    @property
    def intercepts_(self) -> list[Any]:
        """Bias vectors: views of ``net_.b``."""
        check_is_fitted(self, "net_")
        return [self.net_.bias(k) for k in range(self.net_.layout.n_layers)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        tags.non_deterministic = False
        return tags
