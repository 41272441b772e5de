"""``n_models > 1``: the scikit-learn estimators train a deep ensemble in one flat buffer."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from flatnet_xp.backends import to_numpy
from flatnet_xp.sklearn import FlatMLPClassifier, FlatMLPRegressor

RNG = np.random.default_rng(0)
X = RNG.normal(size=(120, 5))
Y_CLASS = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
Y_REG = X @ np.array([1.0, -2.0, 0.5, 0.0, 1.0]) + 0.1 * RNG.normal(size=120)


@parametrize_with_checks([FlatMLPClassifier(n_models=3, max_iter=50), FlatMLPRegressor(n_models=3, max_iter=50)])
def test_an_ensemble_estimator_passes_scikit_learns_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def fitted(cls, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(hidden_layer_sizes=(8,), n_models=4, random_state=0, max_iter=30, **kw)
        return est.fit(X, Y_CLASS if cls is FlatMLPClassifier else Y_REG)


def test_the_ensemble_lives_in_one_buffer_with_a_member_per_row():
    clf = fitted(FlatMLPClassifier)
    assert clf.ensemble_.n_models == 4 and clf.ensemble_.params.shape == (4, clf.ensemble_.layout.n_params)
    np.testing.assert_array_equal(to_numpy(clf.net_.params), to_numpy(clf.ensemble_.params[0]))


def test_members_start_from_different_weights():
    clf = fitted(FlatMLPClassifier)
    rows = to_numpy(clf.ensemble_.params)
    assert all(not np.array_equal(rows[0], rows[i]) for i in range(1, 4))


def test_probabilities_are_the_mean_of_the_members_probabilities():
    clf = fitted(FlatMLPClassifier)
    members = [clf.ensemble_.member(i).predict_proba(X) for i in range(4)]
    np.testing.assert_allclose(clf.predict_proba(X), np.mean(members, axis=0), rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(clf.predict_proba(X), axis=1)])


def test_the_regressor_returns_the_members_spread():
    reg = fitted(FlatMLPRegressor)
    mean, std = reg.predict(X, return_std=True)
    members = np.stack([to_numpy(reg.ensemble_.member(i).predict(X))[:, 0] for i in range(4)])
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, members.std(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(reg.predict(X), mean)


def test_return_std_of_a_single_network_is_refused():
    reg = FlatMLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y_REG)
    with pytest.raises(ValueError, match=r"return_std: .* needs n_models > 1"):
        reg.predict(X, return_std=True)


def test_an_ensemble_predicts_better_spread_where_there_is_no_data():
    reg = fitted(FlatMLPRegressor)
    _, near = reg.predict(X, return_std=True)
    _, far = reg.predict(X * 20, return_std=True)
    assert np.mean(far) > np.mean(near)


def test_bootstrap_gives_each_member_its_own_sample():
    plain, boot = fitted(FlatMLPRegressor), fitted(FlatMLPRegressor, bootstrap=True)
    assert not np.array_equal(plain.predict(X), boot.predict(X))


@pytest.mark.parametrize("early_stopping", [False, True])
def test_curves_and_counters_follow_scikit_learns_names(early_stopping):
    clf = fitted(FlatMLPClassifier, early_stopping=early_stopping)
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_ == clf.loss_curve_[-1]
    if early_stopping:
        assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == clf.n_iter_
    else:
        assert clf.validation_scores_ is None


def test_partial_fit_continues_every_member():
    reg = FlatMLPRegressor(hidden_layer_sizes=(8,), n_models=3, random_state=0)
    reg.partial_fit(X, Y_REG)
    first = to_numpy(reg.ensemble_.params).copy()
    reg.partial_fit(X, Y_REG)
    assert reg.n_iter_ == 2 and not np.array_equal(first, to_numpy(reg.ensemble_.params))


def test_a_fitted_ensemble_estimator_pickles():
    clf = fitted(FlatMLPClassifier)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"n_models": 0}, ValueError, "n_models"),
        ({"n_models": 2.5}, TypeError, "n_models"),
        ({"n_models": True}, TypeError, "n_models"),
        ({"n_models": 2, "solver": "lbfgs"}, ValueError, "n_models: an ensemble trains with a stochastic solver"),
        ({"n_models": 2, "learning_rate": "adaptive", "solver": "sgd"}, ValueError, "learning_rate"),
        ({"bootstrap": "yes"}, TypeError, "bootstrap"),
    ],
)
def test_bad_ensemble_parameters_are_named(kw, error, message):
    with pytest.raises(error, match=message):
        FlatMLPRegressor(hidden_layer_sizes=(4,), max_iter=5, **kw).fit(X, Y_REG)
