"""The flat layout: the seed's length and index formulas, checked on their own (no backend)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flatnet_xp import Layout

sizes_strategy = st.lists(st.integers(1, 9), min_size=2, max_size=6)


@given(sizes_strategy)
def test_lengths_follow_the_seed_formulas(sizes):
    lay = Layout(sizes)
    assert lay.w_len == sum(sizes[r] * sizes[r + 1] for r in range(len(sizes) - 1))
    assert lay.b_len == sum(sizes[1:])


@given(sizes_strategy, st.data())
def test_weight_index_is_the_seed_index(sizes, data):
    # Seed: weight from input l_{k} to output l_{k+1} of layer k sits at
    # l_k + sum_{r<k} L_r L_{r+1} + L_k * l_{k+1}
    lay = Layout(sizes)
    k = data.draw(st.integers(0, len(sizes) - 2))
    i = data.draw(st.integers(0, sizes[k] - 1))
    j = data.draw(st.integers(0, sizes[k + 1] - 1))
    seed_index = i + sum(sizes[r] * sizes[r + 1] for r in range(k)) + sizes[k] * j
    assert lay.weight_index(k, j, i) == seed_index
    assert lay.bias_index(k, j) == sum(sizes[1 : k + 1]) + j


@given(sizes_strategy)
def test_slices_tile_the_buffers_without_gaps(sizes):
    lay = Layout(sizes)
    assert [lay.w_slice(k).stop - lay.w_slice(k).start for k in range(lay.n_layers)] == [o * i for o, i in lay.shapes]
    assert lay.w_slice(0).start == 0 and lay.w_slice(lay.n_layers - 1).stop == lay.w_len
    assert lay.b_slice(lay.n_layers - 1).stop == lay.b_len


def test_seed_network_lengths():
    lay = Layout([50, 5])
    assert (lay.w_len, lay.b_len, lay.shapes) == (250, 5, ((5, 50),))


def test_layout_is_immutable():
    lay = Layout([2, 3])
    with pytest.raises(AttributeError):
        lay.sizes = (4, 5)


@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ([5], ValueError, "at least 2"),
        ([], ValueError, "at least 2"),
        ([3, 0], ValueError, r"layer_sizes\[1\].*positive.*got 0"),
        ([3, -2], ValueError, r"layer_sizes\[1\].*got -2"),
        ([3, 2.5], TypeError, r"layer_sizes\[1\].*integer.*float"),
        ([3, True], TypeError, r"layer_sizes\[1\]"),
        ("35", TypeError, "sequence of positive integers.*str"),
        (7, TypeError, "sequence.*int"),
    ],
)
def test_bad_layer_sizes_are_rejected(sizes, error, match):
    with pytest.raises(error, match=match):
        Layout(sizes)


def test_weight_index_out_of_range():
    with pytest.raises(IndexError, match="shape"):
        Layout([2, 3]).weight_index(0, 3, 0)
