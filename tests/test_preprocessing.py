"""Preprocessing (standardization, feature names, task, classes) and target inference."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatnet_xp.preprocessing import MAX_AUTO_CLASSES, Preprocessing, infer_target


def make(**changes):
    fields = {
        "feature_names": ("a", "b"),
        "means": (1.0, -2.0),
        "scales": (0.5, 3.0),
        "target_name": "y",
        "task": "classify",
        "class_names": ("cat", "dog"),
    }
    return Preprocessing(**(fields | changes))


# ------------------------------------------------------------------------------------ fitting and transforming
def test_fit_from_matches_numpy_and_transform_standardizes(rng):
    X = rng.normal(3.0, 2.0, size=(50, 3))
    X[:, 1] = 7.0  # zero variance: scale 1
    before = X.copy()
    prep = Preprocessing.fit_from(X, ["a", "b", "c"], target_name="t", task="regress")
    np.testing.assert_allclose(prep.means, X.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(prep.scales, [X[:, 0].std(), 1.0, X[:, 2].std()], rtol=1e-15)
    Z = prep.transform(X)
    np.testing.assert_array_equal(X, before)  # never modified
    assert Z is not X and Z.dtype == np.float64
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 2]].std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(Z[:, 1], 0.0)


def test_no_standardization_copies(rng):
    X = rng.normal(size=(5, 2)).astype(np.float32)
    prep = Preprocessing.fit_from(X, ["a", "b"], standardize=False)
    assert prep.means is None and prep.scales is None and not prep.standardized
    Z = prep.transform(X)
    assert Z.dtype == np.float64 and not np.shares_memory(Z, X)
    np.testing.assert_array_equal(Z, X)


def test_transform_checks_its_input():
    prep = make()
    with pytest.raises(ValueError, match=r"expected shape \(n, 2\)"):
        prep.transform(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        prep.transform(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="expected numbers"):
        prep.transform(np.array([["a", "b"]]))


def test_fit_from_refuses_overflow_and_empty():
    with pytest.raises(ValueError, match="too large"):
        Preprocessing.fit_from(np.array([[1e308], [-1e308], [1e308]]), ["a"])
    with pytest.raises(ValueError, match="at least one row"):
        Preprocessing.fit_from(np.zeros((0, 1)), ["a"])


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().task = "regress"  # type: ignore[misc]


# ------------------------------------------------------------------------------------ columns
def test_check_columns_names_what_is_wrong():
    prep = make(feature_names=("a", "b", "c"), means=None, scales=None)
    prep.check_columns(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"missing column 'c'"):
        prep.check_columns(["a", "b"])
    with pytest.raises(ValueError, match=r"unexpected column 'd'"):
        prep.check_columns(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"missing column 'c'; unexpected column 'z'"):
        prep.check_columns(["a", "b", "z"])
    with pytest.raises(ValueError, match=r"different order.*position 1 holds 'b', expected 'a'"):
        prep.check_columns(["b", "a", "c"])
    with pytest.raises(ValueError, match=r"duplicate columns 'a'"):
        prep.check_columns(["a", "a", "b", "c"])


# ------------------------------------------------------------------------------------ the dict in model files
@pytest.mark.parametrize(
    "prep",
    [
        make(),
        make(means=None, scales=None, target_name=None, task="regress", class_names=None),
        make(means=(1e-300, 1e300), scales=(5e-324, 1.7976931348623157e308)),
    ],
)
def test_dict_round_trip_through_json_is_exact(prep):
    d = json.loads(json.dumps(prep.to_dict(), allow_nan=False))
    assert Preprocessing.from_dict(d) == prep


def _good():
    return make().to_dict()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: [], TypeError, "expected a dict"),
        (lambda d: d.pop("task") and d, ValueError, "missing keys"),
        (lambda d: d | {"extra": 1}, ValueError, "unknown keys"),
        (lambda d: d | {"version": 99}, ValueError, "version 99"),
        (lambda d: d | {"version": True}, ValueError, "version True"),
        (lambda d: d | {"feature_names": "ab"}, TypeError, "feature_names"),
        (lambda d: d | {"feature_names": None}, TypeError, "feature_names"),
        (lambda d: d | {"feature_names": ["a", 1]}, TypeError, "feature_names"),
        (lambda d: d | {"feature_names": ["a", "a"]}, ValueError, "duplicate"),
        (lambda d: d | {"feature_names": ["a", ""]}, ValueError, "1 to"),
        (lambda d: d | {"feature_names": []}, ValueError, "at least one"),
        (lambda d: d | {"means": [1.0]}, ValueError, "expected 2 values"),
        (lambda d: d | {"means": [1.0, float("nan")]}, ValueError, "finite"),
        (lambda d: d | {"means": [1.0, float("inf")]}, ValueError, "finite"),
        (lambda d: d | {"means": [True, 1.0]}, TypeError, "numbers"),
        (lambda d: d | {"means": ["1", 1.0]}, TypeError, "numbers"),
        (lambda d: d | {"scales": [1.0, 0.0]}, ValueError, "positive"),
        (lambda d: d | {"scales": [1.0, -1.0]}, ValueError, "positive"),
        (lambda d: d | {"scales": None}, ValueError, "both"),
        (lambda d: d | {"means": {"a": 1}}, TypeError, "means"),
        (lambda d: d | {"target_name": 3}, TypeError, "target_name"),
        (lambda d: d | {"target_name": ""}, ValueError, "target_name"),
        (lambda d: d | {"target_name": "a"}, ValueError, "also a feature"),
        (lambda d: d | {"task": "cluster"}, ValueError, "task"),
        (lambda d: d | {"task": ["classify"]}, TypeError, "task"),
        (lambda d: d | {"class_names": None}, ValueError, "class_names"),
        (lambda d: d | {"class_names": ["only"]}, ValueError, "at least two"),
        (lambda d: d | {"class_names": ["x", "x"]}, ValueError, "duplicate"),
        (lambda d: d | {"task": "regress"}, ValueError, "no classes"),
        (lambda d: d | {"feature_names": ["x" * 5000, "b"]}, ValueError, "1 to"),
    ],
)
def test_from_dict_rejects_malformed_input(change, error, match):
    with pytest.raises(error, match=match):
        Preprocessing.from_dict(change(_good()))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {k: _json for k in ("version", "feature_names", "means", "scales", "target_name", "task", "class_names")}
    )
    | _json
)
def test_from_dict_on_hostile_input_raises_only_value_or_type_errors(d):
    try:
        prep = Preprocessing.from_dict(d)
    except (TypeError, ValueError):
        return
    assert Preprocessing.from_dict(prep.to_dict()) == prep


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_from_dict_accepts_every_valid_variation(data):
    n = data.draw(st.integers(1, 5))
    names = data.draw(st.lists(st.text(min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
    finite = st.floats(allow_nan=False, allow_infinity=False)
    means = data.draw(st.none() | st.lists(finite, min_size=n, max_size=n))
    scales = None if means is None else data.draw(st.lists(st.floats(1e-300, 1e300), min_size=n, max_size=n))
    classes = data.draw(st.none() | st.lists(st.text(min_size=1, max_size=4), min_size=2, max_size=5, unique=True))
    prep = Preprocessing(
        tuple(names),
        None if means is None else tuple(means),
        None if scales is None else tuple(scales),
        None,
        "regress" if classes is None else "classify",
        None if classes is None else tuple(classes),
    )
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep


# ------------------------------------------------------------------------------------ targets
def test_text_labels_are_classes_sorted_like_numpy_unique():
    t = infer_target(np.array(["dog", "cat", "Zebra", "dog"]))
    assert t.task == "classify" and t.class_names == ("Zebra", "cat", "dog") and t.reason == "text labels"
    np.testing.assert_array_equal(t.y, [2, 1, 0, 2])
    assert t.class_names == tuple(np.unique(["dog", "cat", "Zebra"]).tolist())


def test_numeric_strings_are_numbers():
    t = infer_target(["10", "2", "1.0", "2"])
    assert t.task == "classify" and t.class_names == ("1", "2", "10")
    np.testing.assert_array_equal(t.y, [2, 1, 0, 1])
    t = infer_target(["0.5", "2", "1e3"])
    assert t.task == "regress" and t.y.dtype == np.float64
    np.testing.assert_array_equal(t.y, [0.5, 2.0, 1000.0])


def test_few_integers_classify_many_regress():
    few = infer_target(np.arange(100) % MAX_AUTO_CLASSES)
    assert few.task == "classify" and len(few.class_names or ()) == MAX_AUTO_CLASSES
    many = infer_target(np.arange(100) % (MAX_AUTO_CLASSES + 1))
    assert many.task == "regress" and "21 distinct values" in many.reason
    forced = infer_target(np.arange(100) % (MAX_AUTO_CLASSES + 1), "classify")
    assert forced.task == "classify" and len(forced.class_names or ()) == MAX_AUTO_CLASSES + 1


def test_booleans_and_overrides():
    t = infer_target(np.array([True, False, True]))
    assert t.class_names == ("False", "True")
    np.testing.assert_array_equal(t.y, [1, 0, 1])
    assert infer_target([0, 1, 1, 0], "regress").task == "regress"


@pytest.mark.parametrize(
    ("values", "task", "match"),
    [
        ([0.5, 1.0], "classify", "non-integer numbers"),
        (["a", "b"], "regress", "regression needs numbers"),
        (["a", "a"], None, "single class"),
        ([3, 3], "classify", "single class"),
        ([1.0, float("inf")], None, "non-finite"),
        ([], None, "no values"),
    ],
)
def test_infer_target_errors(values, task, match):
    with pytest.raises(ValueError, match=match):
        infer_target(values, task, name="y")


def test_a_regression_target_is_standardized_and_restored(rng):
    X = rng.normal(size=(30, 2))
    y = rng.normal(100.0, 15.0, size=30)
    prep = Preprocessing.fit_from(X, ["a", "b"], target_name="y", task="regress", y=y)
    assert prep.target_mean == pytest.approx(y.mean()) and prep.target_scale == pytest.approx(y.std())
    scaled = prep.scale_target(y)
    assert scaled.mean() == pytest.approx(0.0, abs=1e-12) and scaled.std() == pytest.approx(1.0)
    np.testing.assert_allclose(prep.unscale_target(scaled[:, None])[:, 0], y, rtol=1e-14)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    plain = Preprocessing.fit_from(X, ["a", "b"], standardize=False, task="regress", y=y)
    assert plain.target_mean is None and np.array_equal(plain.scale_target(y), y)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"target_mean": 1.0}, "target_mean, target_scale: give both"),
        ({"task": "classify", "class_names": ("a", "b"), "target_mean": 1.0, "target_scale": 2.0}, "only a regression"),
        ({"task": "regress", "class_names": None, "target_mean": 1.0, "target_scale": 0.0}, "target_scale"),
        ({"task": "regress", "class_names": None, "target_mean": float("nan"), "target_scale": 1.0}, "target_mean"),
    ],
)
def test_bad_target_standardization_is_refused(changes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(**changes)


# ------------------------------------------------------------------------------------ issue 18, defect 11
def test_nan_in_y_is_called_missing_not_overflow():
    with pytest.raises(ValueError, match=r"y: NaN \(a missing value\) at row 1"):
        Preprocessing.fit_from(np.ones((3, 1)), ["a"], y=[1.0, np.nan, 2.0])


def test_y_of_the_wrong_length_names_both_lengths():
    with pytest.raises(ValueError, match=r"y: expected 3 values \(one per row of X\), got 2"):
        Preprocessing.fit_from(np.ones((3, 1)), ["a"], y=[1.0, 2.0])


@pytest.mark.parametrize("indices", [[-1], [2], [0, 5]])
def test_decode_refuses_indices_outside_the_classes(indices):
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 1\]"):
        make().decode(indices)


# ------------------------------------------------------------------------------------ column steps
from flatnet_xp.preprocessing import ColumnSteps, Step, fit_columns  # noqa: E402


def _table():
    return {
        "row_id": list(range(100, 130)),
        "size": [float(i) if i % 6 else None for i in range(30)],
        "colour": ["red", "blue", "green"] * 9 + ["mauve", "NA", "red"],
        "when": [f"2021-03-{d:02d}" for d in range(1, 31)],
        "same": ["x"] * 30,
        "label": ["a", "b"] * 15,
    }


def test_fit_columns_decides_the_roles():
    columns, roles = fit_columns(_table(), target="label")
    by_name = {r.column: r.role for r in roles}
    assert by_name == {
        "row_id": "dropped",
        "size": "numeric",
        "colour": "categorical",
        "when": "date",
        "same": "dropped",
    }
    assert columns.id_column == "row_id" and columns.input_columns == ("size", "colour", "when")
    assert "size__missing" in columns.output_names and "colour=(rare)" in columns.output_names


def test_onehot_step_unknown_level_is_all_zeros_and_rare_levels_share_one_output():
    step = Step("onehot", "c", {"levels": ["a", "b"], "rare": ["z"], "fill": "a", "indicator": True, "number": None})
    out = step.transform(["b", "never seen", "z", None])
    assert step.output_names == ["c=a", "c=b", "c=(rare)", "c__missing"]
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])


def test_numeric_step_fills_missing_and_non_numbers_with_the_median():
    step = Step("numeric", "x", {"fill": 2.5, "indicator": True})
    np.testing.assert_array_equal(step.transform([1.0, "oops", None, "4"]), [[1, 0], [2.5, 0], [2.5, 1], [4, 0]])


def test_column_steps_round_trip_through_json():
    columns, _ = fit_columns(_table(), target="label")
    again = ColumnSteps.from_dict(json.loads(json.dumps(columns.to_dict())))
    assert again == columns
    np.testing.assert_array_equal(again.transform(_table()), columns.transform(_table()))


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"kind": "exec", "column": "c", "params": {}}, "step kind"),
        ({"kind": "numeric", "column": "c", "params": {"fill": "1", "indicator": False}}, "finite number"),
        ({"kind": "numeric", "column": "c", "params": {"fill": 1.0}}, "expected parameters"),
        (
            {
                "kind": "onehot",
                "column": "c",
                "params": {"levels": [], "rare": [], "fill": None, "indicator": False, "number": None},
            },
            "no levels",
        ),
    ],
)
def test_column_steps_from_dict_rejects_malformed_records(step, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ColumnSteps.from_dict({"steps": [step], "dropped": [], "id_column": None})


def test_version_1_dicts_still_load():
    d = make().to_dict()
    del d["columns"]
    d["version"] = 1
    assert Preprocessing.from_dict(d) == make()


def test_preprocessing_with_columns_round_trips():
    columns, _ = fit_columns(_table(), target="label")
    X = columns.transform(_table())
    prep = Preprocessing.fit_from(
        X, columns.output_names, target_name="label", task="classify", class_names=("a", "b"), columns=columns
    )
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
