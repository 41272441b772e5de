"""The scikit-learn estimators: scikit-learn's own estimator checks, pipelines, search, pickling."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import (  # noqa: E402
    load_diabetes,
    load_digits,
    load_iris,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from flatnet_xp.backends import to_numpy  # noqa: E402
from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor  # noqa: E402
from tests.conftest import backend_unavailable  # noqa: E402

#: Default parameters, and max_iter=50 (scikit-learn's MLPRegressor passes check_regressors_train there).
ESTIMATORS = [
    FlatMLPClassifier(random_state=0),
    FlatMLPRegressor(random_state=0),
    FlatMLPClassifier(max_iter=50, random_state=0),
    FlatMLPRegressor(max_iter=50, random_state=0),
    FlatMLPClassifier(activation="leaky_relu", max_iter=50, random_state=0),
]
#: The same checks on JAX: float64 for the checks' float64 data (JAX's x64 scoped to the network).
JAX_ESTIMATORS = [
    FlatMLPClassifier(max_iter=50, random_state=0, backend="jax"),
    FlatMLPRegressor(max_iter=50, random_state=0, backend="jax"),
]


@parametrize_with_checks(ESTIMATORS)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.skipif(backend_unavailable("jax") is not None, reason="needs jax")
@parametrize_with_checks(JAX_ESTIMATORS)
def test_scikit_learn_estimator_checks_on_jax_without_a_warning(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # JAX's "truncated to dtype int32/float32" included
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline_with_scaler_learns_digits():
    Xtr, Xte, ytr, yte = digits_split()
    pipe = make_pipeline(StandardScaler(), FlatMLPClassifier((64,), max_iter=40, batch_size=32, random_state=0))
    pipe.fit(Xtr, ytr)
    assert pipe.score(Xte, yte) > 0.95


def test_grid_search_picks_parameters():
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), FlatMLPClassifier(max_iter=60, learning_rate_init=0.02, random_state=0)),
        {"flatmlpclassifier__hidden_layer_sizes": [(4,), (16,)], "flatmlpclassifier__alpha": [1e-4, 1e-2]},
        cv=3,
        n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_score_ > 0.85 and set(search.best_params_) == {
        "flatmlpclassifier__hidden_layer_sizes",
        "flatmlpclassifier__alpha",
    }


def test_string_labels_round_trip_and_probabilities_follow_classes():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = FlatMLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0).fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    pred = clf.predict(X)
    assert pred.dtype.kind == "U" and np.mean(pred == names) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], pred)


def test_binary_uses_one_logistic_output():
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), max_iter=50, random_state=0).fit(X, y == 2)
    assert clf.net_.layout.sizes[-1] == 1 and clf.n_outputs_ == 1
    assert clf.predict_proba(X).shape == (150, 2)


def test_multi_output_regression():
    X, y = load_diabetes(return_X_y=True)
    Y = np.stack([y, -y], axis=1) / 100
    reg = FlatMLPRegressor(hidden_layer_sizes=(32,), max_iter=100, learning_rate_init=0.01, random_state=0).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (442, 2) and pred.dtype == np.float64 and reg.score(X, Y) > 0.3


def test_coefs_and_intercepts_are_views_of_the_flat_buffers():
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((5,), max_iter=5, random_state=0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(4, 5), (5, 3)]
    assert np.shares_memory(clf.coefs_[1], clf.net_.w) and np.shares_memory(clf.intercepts_[0], clf.net_.b)
    clf.coefs_[0][1, 2] = 9.0  # (input 1, unit 2) is the seed's index 1 + 4 * 2
    assert clf.net_.w[1 + 4 * 2] == 9.0


def test_fitted_attributes_and_history():
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((5,), max_iter=7, random_state=0).fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 7 and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.n_features_in_ == 4 and clf.n_layers_ == 3


def test_feature_names_are_recorded_with_pandas():
    pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = FlatMLPClassifier((5,), max_iter=3, random_state=0).fit(X, y)
    assert list(clf.feature_names_in_) == list(X.columns)


def test_partial_fit_continues_and_checks_classes():
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:75], y[:75], classes=[0, 1, 2])
    first = clf.net_.params.copy()
    clf.partial_fit(X[75:], y[75:])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 2 and clf.t_ == 150  # n_iter_: of the last call
    assert not np.array_equal(first, clf.net_.params)
    with pytest.raises(ValueError, match=r"`y` has classes not in `self\.classes_`"):
        clf.partial_fit(X[:3], [0, 1, 7])


def test_early_stopping_uses_a_validation_split():
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier(
        (8,), max_iter=300, learning_rate_init=0.05, early_stopping=True, n_iter_no_change=3, tol=1e-3, random_state=0
    ).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ < 300


def test_pickle_and_clone_keep_predictions():
    from sklearn.base import clone

    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), max_iter=20, random_state=0).fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert clone(clf).get_params() == clf.get_params()
    back.partial_fit(X, y)  # optimizer state survives the round trip


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"activation": "softplus"}, "activation"),
        ({"solver": "newton"}, "solver"),
        ({"learning_rate": "cosine"}, "learning_rate"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"momentum": 1.5}, "momentum"),
        ({"beta_2": 1.0}, "beta_2"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"max_fun": 0}, "max_fun"),
        ({"random_state": "seven"}, "random_state"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"backend": "tensorflow"}, "backend"),
        ({"alpha": "big"}, "alpha"),
        ({"shuffle": "yes"}, "shuffle"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, match):
    X, y = load_iris(return_X_y=True)
    with pytest.raises((ValueError, TypeError), match=match):
        FlatMLPClassifier(**params).fit(X, y)


def test_bad_regression_loss_is_named():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="loss"):
        FlatMLPRegressor(loss="absolute_error").fit(X, y)
    with pytest.raises(ValueError, match="y: loss='poisson' needs non-negative targets"):
        FlatMLPRegressor(loss="poisson").fit(X, y - y.mean())


def test_other_backends_take_numpy_and_return_numpy(xp):
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), max_iter=30, backend=xp, random_state=0).fit(X, y)
    ref = FlatMLPClassifier((8,), max_iter=30, random_state=0).fit(X, y)
    assert isinstance(clf.predict_proba(X), np.ndarray)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-9, atol=1e-12)


def _iris_task(task):
    X, y = load_iris(return_X_y=True)
    if task == "binary":
        return X, (y > 0).astype(np.int64)
    if task == "multilabel":
        return X, np.stack([y == 0, y == 2], axis=1).astype(np.int64)
    if task == "regression":
        return X[:, :3], X[:, 3]
    return X, y


@pytest.mark.skipif(backend_unavailable("jax") is not None, reason="needs jax")
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression"])
def test_jax_answers_as_numpy_does_in_either_precision(task, dtype, solver):
    X, y = _iris_task(task)
    X = X.astype(dtype)
    make = FlatMLPRegressor if task == "regression" else FlatMLPClassifier
    ours, ref = (
        _fitted(make(hidden_layer_sizes=(8,), solver=solver, max_iter=30, backend=b, random_state=0), X, y)
        for b in ("jax", "numpy")
    )
    # float32 rounding differs between the libraries; L-BFGS's line searches amplify it over 30 iterations.
    tol = 1e-9 if dtype == "float64" else 1e-4 if solver == "adam" else 5e-2
    methods = ["predict"] if task == "regression" else ["predict_proba", "predict_log_proba"]
    for method in methods:
        got, want = getattr(ours, method)(X), getattr(ref, method)(X)
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype == np.dtype(dtype), method
        if method == "predict_log_proba":  # compared as probabilities: log(0) = -inf on one side only
            got, want = np.exp(got), np.exp(want)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if task != "regression":
        assert np.mean(ours.predict(X) == ref.predict(X)) >= (1.0 if tol < 1e-3 else 0.95)
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), rel=tol)


@pytest.mark.skipif(backend_unavailable("cupy") is not None, reason="needs cupy and a GPU")
def test_device_input_gives_device_output():
    import cupy

    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), max_iter=30, backend="cupy", random_state=0).fit(cupy.asarray(X), y)
    out = clf.predict_proba(cupy.asarray(X))
    assert isinstance(out, cupy.ndarray)
    np.testing.assert_allclose(to_numpy(out), clf.predict_proba(X))


# ---------------------------------------------------------------------------------------------
# Parity with scikit-learn's MLP: the same parameters train the same weights.

IRIS = load_iris(return_X_y=True)
_REG_X, _REG_Y = make_regression(n_samples=60, n_features=5, n_targets=3, random_state=0)
_ML_X, _ML_Y = make_multilabel_classification(n_samples=50, random_state=0)
_DIGITS = (load_digits().data / 16, load_digits().target)

PARITY_CASES = {
    "sgd nesterov, multiclass": ("clf", *IRIS, dict(solver="sgd", learning_rate_init=0.01, alpha=0.01)),
    "sgd momentum, binary, logistic": (
        "clf", IRIS[0], IRIS[1] == 1,
        dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05, alpha=0.1, activation="logistic"),
    ),
    "sgd invscaling + momentum": ("clf", *IRIS, dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5)),
    "sgd adaptive": (
        "clf", *IRIS, dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=0.5, max_iter=200),
    ),
    "sgd, batches of 40 (last one 30)": ("clf", *IRIS, dict(solver="sgd", batch_size=40, alpha=0.1)),
    "adam, batches of 32": ("clf", *IRIS, dict(solver="adam", batch_size=32, learning_rate_init=0.01)),
    "adam, early stopping (the same split)": ("clf", *_DIGITS, dict(early_stopping=True, learning_rate_init=0.05)),
    "sgd, multilabel, tanh": ("clf", _ML_X, _ML_Y, dict(solver="sgd", learning_rate_init=0.01, activation="tanh")),
    "sgd, 3 outputs, squared error": ("reg", _REG_X, _REG_Y / 100, dict(solver="sgd", alpha=0.5)),
    "sgd, poisson": ("reg", _REG_X, np.abs(_REG_Y[:, 0]) / 100, dict(solver="sgd", loss="poisson")),
    "lbfgs, multiclass": ("clf", *IRIS, dict(solver="lbfgs", max_iter=10)),
    "lbfgs, 3 outputs": ("reg", _REG_X, _REG_Y / 100, dict(solver="lbfgs", max_iter=10, alpha=0.1)),
}  # fmt: skip


def _assert_same_or_both_none(ours, theirs, rel):
    """scikit-learn leaves ``validation_scores_`` / ``best_loss_`` None where they do not apply
    (pytest >= 9.2 refuses ``approx(None)``)."""
    if theirs is None:
        assert ours is None
    else:
        assert ours == pytest.approx(theirs, rel=rel)


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_training_equals_scikit_learns(case):
    """Same initial weights, losses, L2, updates, schedules and stopping rules as scikit-learn: the same
    weights (shuffle=False; with shuffle=True only the sample orders differ), loss curve and n_iter_."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    kind, X, y, params = PARITY_CASES[case]
    params = {"hidden_layer_sizes": (7,), "shuffle": False, "random_state": 0, "tol": 0.0, "max_iter": 30, **params}
    ours_cls, theirs_cls = (FlatMLPClassifier, MLPClassifier) if kind == "clf" else (FlatMLPRegressor, MLPRegressor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = theirs_cls(**params).fit(X, y)
        ours = ours_cls(**params).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ and ours.out_activation_ == theirs.out_activation_
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-5)
    if params.get("solver") != "lbfgs":
        # One batch an epoch: exact. Several: the L2 term of the reported loss uses epoch-level norms.
        samples_per_epoch = ours.t_ // ours.n_iter_
        full = params.get("batch_size", 200) >= samples_per_epoch
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12 if full else 1e-5)
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
        _assert_same_or_both_none(ours.validation_scores_, theirs.validation_scores_, rel=1e-12)
        _assert_same_or_both_none(ours.best_loss_, theirs.best_loss_, rel=1e-12 if full else 1e-5)
    np.testing.assert_allclose(ours.predict_proba(X) if kind == "clf" else ours.predict(X),
                               theirs.predict_proba(X) if kind == "clf" else theirs.predict(X), atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_partial_fit_trains_as_scikit_learns_partial_fit(kind):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    X, y = IRIS
    params = dict(hidden_layer_sizes=(5,), solver="sgd", batch_size=16, random_state=0, learning_rate_init=0.05)
    ours, theirs = (FlatMLPClassifier, MLPClassifier) if kind == "clf" else (FlatMLPRegressor, MLPRegressor)
    ours, theirs = ours(**params), theirs(**params)
    extra = {"classes": [0, 1, 2]} if kind == "clf" else {}
    for _ in range(4):  # each call shuffles afresh from random_state, in scikit-learn as here
        ours.partial_fit(X, y, **extra)
        theirs.partial_fit(X, y, **extra)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_partial_fit_without_shuffling_trains_exactly_as_fit_epoch_for_epoch():
    X, y = IRIS
    params = dict(hidden_layer_sizes=(8,), batch_size=16, tol=0.0, n_iter_no_change=100, random_state=3, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = FlatMLPClassifier(max_iter=6, **params).fit(X, y)
    stepped = FlatMLPClassifier(**params)
    for _ in range(6):
        stepped.partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(stepped.net_.params, fitted.net_.params)
    assert stepped.loss_curve_ == fitted.loss_curve_ and stepped.t_ == fitted.t_ == 6 * 150


def test_one_core_fit_call_per_estimator_fit(monkeypatch):
    from flatnet_xp.network import FlatMLP

    calls = []
    real_fit = FlatMLP.fit
    monkeypatch.setattr(FlatMLP, "fit", lambda self, *a, **k: calls.append(k["epochs"]) or real_fit(self, *a, **k))
    X, y = IRIS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = FlatMLPClassifier((8,), solver="sgd", max_iter=25, random_state=0).fit(X, y)
    assert calls == [25] and clf.n_iter_ == 25


def test_invscaling_counts_samples_across_warm_starts():
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    clf = FlatMLPClassifier(4, solver="sgd", learning_rate="invscaling", power_t=0.25, max_iter=1, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y).fit(X, y)
    assert clf.t_ == 8 and clf._optimizer.learning_rate == clf.learning_rate_init / 9**0.25


# ---------------------------------------------------------------------------------------------
# Targets, inputs and attributes scikit-learn's way.


def test_multilabel_targets_get_one_logistic_output_per_label():
    clf = FlatMLPClassifier(30, solver="lbfgs", random_state=0).fit(_ML_X, _ML_Y)
    proba = clf.predict_proba(_ML_X)
    assert (
        clf.out_activation_ == "logistic" and clf.n_outputs_ == _ML_Y.shape[1] and list(clf.classes_) == [0, 1, 2, 3, 4]
    )
    assert proba.shape == _ML_Y.shape and not np.allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(clf.predict(_ML_X), (proba > 0.5).astype(np.int64))
    assert clf.score(_ML_X, _ML_Y) > 0.95  # subset accuracy


def test_a_single_class_is_accepted_and_always_predicted():
    X = np.random.default_rng(0).normal(size=(10, 2))
    clf = FlatMLPClassifier(4, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, ["a"] * 10)
    assert list(clf.predict(X)) == ["a"] * 10 and clf.predict_proba(X).shape == (10, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_and_predictions_follow_the_input_dtype(dtype):
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(dtype)
    reg = FlatMLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y / 100)
        forced = FlatMLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0, dtype="float64").fit(X, y / 100)
    assert reg.net_.dtype_name == np.dtype(dtype).name and reg.predict(X).dtype == dtype
    assert all(c.dtype == dtype for c in reg.coefs_ + reg.intercepts_)
    assert forced.net_.dtype_name == "float64" and forced.predict(X).dtype == np.float64


def test_sparse_input_trains_exactly_as_dense():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y = load_digits(n_class=2, return_X_y=True)
    X, y = X[:120] / 16, y[:120]
    params = dict(hidden_layer_sizes=(15,), solver="sgd", batch_size=32, max_iter=5, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = FlatMLPClassifier(**params).fit(X, y)
        sparse = FlatMLPClassifier(**params).fit(scipy_sparse.csr_matrix(X), y)
    np.testing.assert_array_equal(sparse.net_.params, dense.net_.params)
    np.testing.assert_array_equal(sparse.predict_proba(scipy_sparse.csc_matrix(X)), dense.predict_proba(X))


def test_integer_sample_weights_equal_repeated_samples():
    X, y = IRIS
    weights = np.random.default_rng(0).integers(0, 3, size=len(y))
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=30, alpha=1e-2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = FlatMLPClassifier(**params).fit(X, y, sample_weight=weights)
        repeated = FlatMLPClassifier(**params).fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-8)


def test_early_stopping_keeps_the_best_weights_and_scores():
    X, y = load_digits(n_class=3, return_X_y=True)
    clf = FlatMLPClassifier((16,), early_stopping=True, n_iter_no_change=3, learning_rate_init=0.05, random_state=0)
    clf.fit(X / 16, y)
    assert clf.best_loss_ is None and clf.best_validation_score_ == max(clf.validation_scores_)
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    np.testing.assert_array_equal(clf.net_.params, clf._best_params)


def test_without_early_stopping_training_loss_is_monitored_and_last_weights_kept():
    X, y = IRIS
    clf = FlatMLPClassifier((8,), solver="sgd", tol=0.5, max_iter=500, random_state=0).fit(X, y)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.best_loss_ == min(clf.loss_curve_) and clf._no_improvement_count == clf.n_iter_no_change + 1
    assert clf.n_iter_ == len(clf.loss_curve_) < 500 and clf.loss_ == clf.loss_curve_[-1]


def test_divergence_raises_scikit_learns_error_or_records_nan_with_early_stopping():
    X, y = IRIS
    params = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", learning_rate_init=1.0, max_iter=20)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        FlatMLPRegressor(**params, random_state=0).fit(X, y)
    reg = FlatMLPRegressor(**params, early_stopping=True, random_state=0).fit(X, y)
    assert np.isnan(reg.validation_scores_[-1]) and np.all(np.isfinite(reg.predict(X)))


def test_verbose_prints_scikit_learns_lines(capsys):
    X, y = IRIS
    FlatMLPClassifier(4, max_iter=2, verbose=True, early_stopping=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Iteration 1, loss = ") and out[1].startswith("Validation score: ")


def test_partial_fit_is_absent_for_lbfgs_and_refuses_early_stopping():
    assert not hasattr(FlatMLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(FlatMLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        FlatMLPRegressor(early_stopping=True).partial_fit(*load_diabetes(return_X_y=True))


# ---------------------------------------------------------------------------------------------
# A failed fit changes nothing.


def _state(est):
    """The fitted attributes (lists copied: the loss curve grows in place) and the weights."""
    return {
        k: np.array(v.params) if k == "net_" else list(v) if isinstance(v, list) else v
        for k, v in vars(est).items()
        if k != "_optimizer"
    }


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[key], value)
        else:
            assert after[key] is value or after[key] == value, key


def test_warm_start_with_other_classes_raises_and_changes_nothing():
    X, y = IRIS
    clf = FlatMLPClassifier(2, solver="lbfgs", warm_start=True, random_state=42, tol=1e-2).fit(X, y)
    before = _state(clf)
    with pytest.raises(ValueError, match=r"warm_start can only be used where `y` has the same classes"):
        clf.fit(X, np.array([0] * 50 + [1] * 50 + [3] * 50))
    _assert_same_state(before, _state(clf))


@pytest.mark.parametrize(
    ("make_input", "warm_start", "match"),
    [
        (lambda X, y: (np.where(X > 7, np.nan, X), y), False, "NaN"),
        (lambda X, y: (X[:, :3], y), True, "features"),
        (lambda X, y: (X, np.arange(len(y)) * 0.5), False, "Unknown label type"),
        (lambda X, y: (X[:4], np.array([0, 0, 0, 1])), False, "least populated"),
    ],
    ids=["nan", "features", "continuous-y", "stratify"],
)
def test_a_refit_that_fails_validation_leaves_the_estimator_unchanged(make_input, warm_start, match):
    X, y = IRIS
    clf = FlatMLPClassifier(4, max_iter=3, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    clf.set_params(warm_start=warm_start)
    before = _state(clf)
    with pytest.raises(ValueError, match=match):
        clf.fit(*make_input(X, y))
    _assert_same_state(before, _state(clf))


def _fitted(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


NEGATIVE_WEIGHT = "sample_weight: expected finite non-negative weights"
OVERFLOW = r"holds 1e\+39, beyond the largest float32 value"


@pytest.mark.parametrize(
    ("kind", "params", "refit", "match"),
    [
        ("clf", {}, lambda e, X, y: e.fit(X, y, sample_weight=-np.ones(len(y))), NEGATIVE_WEIGHT),
        ("clf", {"warm_start": True}, lambda e, X, y: e.fit(X, y, sample_weight=-np.ones(len(y))), NEGATIVE_WEIGHT),
        ("clf", {}, lambda e, X, y: e.partial_fit(X, y, sample_weight=-np.ones(len(y))), NEGATIVE_WEIGHT),
        ("reg", {}, lambda e, X, y: e.partial_fit(X, y, sample_weight=-np.ones(len(y))), NEGATIVE_WEIGHT),
        ("clf", {"dtype": "float32"}, lambda e, X, y: e.fit(np.where(X > 7, 1e39, X), y), "X: " + OVERFLOW),
        ("reg", {"dtype": "float32"}, lambda e, X, y: e.fit(X, np.where(y > 2, 1e39, y)), "y: " + OVERFLOW),
        ("reg", {"dtype": "float32", "warm_start": True}, lambda e, X, y: e.fit(X, np.where(y > 2, 1e39, y)),
         "y: " + OVERFLOW),
        ("reg", {"dtype": "float32"}, lambda e, X, y: e.partial_fit(X, np.where(y > 2, 1e39, y)), "y: " + OVERFLOW),
    ],
    ids=["weight-fit", "weight-warm-start", "weight-partial-fit-clf", "weight-partial-fit-reg", "float32-X",
         "float32-y", "float32-y-warm-start", "float32-y-partial-fit"],
)  # fmt: skip
def test_a_fitted_estimator_keeps_its_model_when_a_refit_fails_its_checks(kind, params, refit, match):
    X, y = IRIS
    if kind == "reg":
        X, y = X[:, :3], X[:, 3]
        est = FlatMLPRegressor(hidden_layer_sizes=8, max_iter=30, random_state=0, **params)
    else:
        est = FlatMLPClassifier(8, max_iter=30, random_state=0, **params)
    _fitted(est, X, y)
    before, score = _state(est), est.score(X, y)
    with pytest.raises(ValueError, match=match):
        refit(est, X, y)
    _assert_same_state(before, _state(est))
    assert est.score(X, y) == score and est.n_iter_ > 0 and len(est.loss_curve_) == est.n_iter_


def test_a_warm_start_that_diverges_keeps_finite_weights_and_the_epochs_that_ran():
    X, y = IRIS
    params = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", max_iter=20, random_state=0)
    reg = _fitted(FlatMLPRegressor(**params, learning_rate_init=1e-3), X, y)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        reg.set_params(warm_start=True, learning_rate_init=1.0).fit(X, y)
    assert np.all(np.isfinite(np.asarray(reg.net_.params)))  # the last finite weights, not the earlier model
    assert 0 < reg.n_iter_ < 20 and len(reg.loss_curve_) == 20 + reg.n_iter_


def test_validation_set_too_small_is_refused():
    X, y = make_regression(n_samples=2, n_features=5, random_state=0)
    with pytest.raises(ValueError, match="The validation set is too small"):
        FlatMLPRegressor(early_stopping=True, random_state=0).fit(X, y)


# ---------------------------------------------------------------------------------------------
# Beyond scikit-learn's MLP: class_weight, validation_loss_curve_, leaky_relu.


@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 3.0, 2: 0.5}], ids=["balanced", "dict"])
@pytest.mark.parametrize("with_sample_weight", [False, True], ids=["alone", "times-sample-weight"])
def test_class_weight_trains_as_the_equivalent_sample_weights(class_weight, with_sample_weight):
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = IRIS[0][:120], IRIS[1][:120]  # unbalanced: 50, 50, 20
    sw = np.linspace(0.5, 2.0, len(y)) if with_sample_weight else None
    params = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    ours = _fitted(FlatMLPClassifier(class_weight=class_weight, **params), X, y)
    if sw is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(X, y, sample_weight=sw)
    combined = compute_sample_weight(class_weight, y) * (1.0 if sw is None else sw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = FlatMLPClassifier(**params).fit(X, y, sample_weight=combined)
    np.testing.assert_allclose(ours.net_.params, ref.net_.params, rtol=1e-12, atol=1e-14)
    assert ours.loss_curve_ == pytest.approx(ref.loss_curve_, rel=1e-12)


def test_class_weight_balanced_raises_minority_recall():
    X, y = IRIS[0][:120], IRIS[1][:120]
    params = dict(hidden_layer_sizes=(4,), max_iter=30, learning_rate_init=0.01, random_state=0)
    plain = _fitted(FlatMLPClassifier(**params), X, y)
    balanced = _fitted(FlatMLPClassifier(class_weight={0: 1.0, 1: 1.0, 2: 20.0}, **params), X, y)
    assert np.mean(balanced.predict(X[y == 2]) == 2) > np.mean(plain.predict(X[y == 2]) == 2)


@pytest.mark.parametrize(
    ("class_weight", "call", "match"),
    [
        ("auto", "fit", r"class_weight: expected None, 'balanced' or a dict"),
        ({0: 1.0, 7: 2.0}, "fit", r"class_weight: The classes, \[1, 2\], are not in class_weight"),
        ({0: -1.0}, "fit", "class_weight: expected finite non-negative weights"),
        ("balanced", "partial_fit", r"class_weight: 'balanced' .* not supported by partial_fit"),
    ],
    ids=["unknown-name", "unknown-label", "negative", "balanced-partial-fit"],
)
def test_bad_class_weight_is_named(class_weight, call, match):
    X, y = IRIS
    clf = FlatMLPClassifier(4, max_iter=2, class_weight=class_weight)
    kwargs = {"classes": np.unique(y)} if call == "partial_fit" else {}
    with pytest.raises(ValueError, match=match):
        getattr(clf, call)(X, y, **kwargs)
    assert not hasattr(clf, "net_")


def test_class_weight_is_not_a_regressor_parameter():
    assert "class_weight" in FlatMLPClassifier().get_params()
    assert "class_weight" not in FlatMLPRegressor().get_params()


def _held_out(X, y, est):
    """The early-stopping split the estimator made: scikit-learn's ``train_test_split`` call, from the
    ``random_state`` stream after the initial weights (one uniform draw per parameter)."""
    rs = np.random.RandomState(est.random_state)
    rs.uniform(size=est.net_.params.shape[0])
    stratify = y if isinstance(est, FlatMLPClassifier) and len(np.unique(y)) == 2 else None
    _, test = train_test_split(np.arange(len(y)), random_state=rs, test_size=est.validation_fraction,
                               stratify=stratify)  # fmt: skip
    return X[test], y[test]


@pytest.mark.parametrize("alpha", [0.0, 0.01])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_validation_loss_curve_is_the_training_loss_on_the_held_out_data(kind, alpha):
    from sklearn.metrics import log_loss

    X, y = IRIS if kind == "clf" else (IRIS[0][:, :3], IRIS[0][:, 3])
    make = FlatMLPClassifier if kind == "clf" else FlatMLPRegressor
    # One batch an epoch (batch_size >= n): the L2 term is 0.5 * alpha * ||W||^2 / n_train exactly.
    est = _fitted(make(hidden_layer_sizes=(8,), alpha=alpha, batch_size=500, max_iter=15, early_stopping=True,
                       n_iter_no_change=100, learning_rate_init=0.01, random_state=0), X, y)  # fmt: skip
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == len(est.loss_curve_) == 15
    Xv, yv = _held_out(X, y, est)
    best = int(np.argmax(est.validation_scores_))  # the weights early stopping restored
    data = log_loss(yv, est.predict_proba(Xv)) if kind == "clf" else 0.5 * np.mean((est.predict(Xv) - yv) ** 2)
    n_train = len(y) - len(yv)
    penalty = 0.5 * alpha * sum(np.sum(c**2) for c in est.coefs_) / n_train
    assert est.validation_loss_curve_[best] == pytest.approx(data + penalty, rel=1e-10)


def test_validation_loss_curve_is_none_without_early_stopping():
    est = _fitted(FlatMLPClassifier(4, max_iter=3, random_state=0), *IRIS)
    assert est.validation_loss_curve_ is None and est.validation_scores_ is None


def test_validation_loss_curve_grows_across_warm_starts_and_restarts_on_fit():
    est = FlatMLPClassifier(4, max_iter=3, early_stopping=True, n_iter_no_change=100, random_state=0)
    _fitted(est, *IRIS)
    _fitted(est.set_params(warm_start=True), *IRIS)
    assert len(est.validation_loss_curve_) == 6
    _fitted(est.set_params(warm_start=False), *IRIS)
    assert len(est.validation_loss_curve_) == 3


def test_leaky_relu_hidden_layers_have_slope_one_hundredth():
    X, y = IRIS
    est = _fitted(FlatMLPClassifier((6, 5), activation="leaky_relu", max_iter=20, random_state=0), X, y)
    a = X
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1], strict=True):
        s = a @ W + b
        a = np.where(s > 0, s, 0.01 * s)
    z = a @ est.coefs_[-1] + est.intercepts_[-1]
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(est.predict_proba(X), expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    assert np.any(a < 0)  # some negative pre-activations went through with slope 0.01
