"""What a new user reads: the history's summary, the loss curve's axis, messages that point at the fix."""

from __future__ import annotations

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.cli import main


def test_history_repr_is_one_short_line():
    h = fx.History(loss=[1.0, 0.5], batch_loss=[0.9] * 500, val_loss=[2.0, 1.5], best_epoch=2)
    text = repr(h)
    assert text == "History(epochs=2, loss 1 -> 0.5, val_loss 1.5, best_epoch=2, 500 batch losses)"
    assert str(h) == text


def test_loss_curve_ticks_are_whole_epochs():
    pytest.importorskip("matplotlib")
    fig = fx.History(loss=[1.0, 0.7, 0.6], val_loss=[1.1, 0.9, 0.8]).plot()
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) > 1 and np.all(ticks == np.round(ticks))


def test_fit_with_text_labels_points_at_the_classifier():
    net = fx.FlatMLP([2, 4, 2], seed=0)
    with pytest.raises(TypeError, match="FlatMLPClassifier"):
        net.fit(np.zeros((4, 2)), np.array(["a", "b", "a", "b"]), epochs=1)


def test_numbers_in_messages_are_not_numpy_reprs():
    with pytest.raises(ValueError) as info:
        fx.Adam(lr=np.float64(-0.11))
    assert "-0.11" in str(info.value) and "np." not in str(info.value)


def test_top_level_help_names_every_array_library(capsys):
    assert main(["--help"]) == 0
    assert "NumPy, CuPy, PyTorch or JAX" in " ".join(capsys.readouterr().out.split())
