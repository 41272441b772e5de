"""The scikit-learn estimators: scikit-learn's own estimator checks, pipelines, search, pickling."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_diabetes, load_digits, load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from flatnet_xp._compat import to_numpy  # noqa: E402
from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor  # noqa: E402
from tests.conftest import backend_unavailable  # noqa: E402


@parametrize_with_checks([FlatMLPClassifier(random_state=0), FlatMLPRegressor(random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
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
    reg = FlatMLPRegressor((32,), max_iter=100, learning_rate_init=0.01, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (442, 2) and reg.score(X, Y) > 0.3


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
    assert clf.n_iter_ == 2 and not np.array_equal(first, clf.net_.params)
    with pytest.raises(ValueError, match="not seen"):
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
        ({"solver": "lbfgs"}, "solver"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"backend": "jax"}, "backend"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, match):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=match):
        FlatMLPClassifier(**params).fit(X, y)


def test_other_backends_take_numpy_and_return_numpy(xp):
    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), max_iter=30, backend=xp, random_state=0).fit(X, y)
    ref = FlatMLPClassifier((8,), max_iter=30, random_state=0).fit(X, y)
    assert isinstance(clf.predict_proba(X), np.ndarray)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(backend_unavailable("cupy") is not None, reason="needs cupy and a GPU")
def test_device_input_gives_device_output():
    import cupy

    X, y = load_iris(return_X_y=True)
    clf = FlatMLPClassifier((8,), max_iter=30, backend="cupy", random_state=0).fit(cupy.asarray(X), y)
    out = clf.predict_proba(cupy.asarray(X))
    assert isinstance(out, cupy.ndarray)
    np.testing.assert_allclose(to_numpy(out), clf.predict_proba(X))
