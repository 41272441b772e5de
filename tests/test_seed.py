"""The seed write-up's printed table, reproduced through the public API on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from flatnet_xp.demo import TOLERANCE, run_demo
from flatnet_xp.seed import SEED_TABLE, run_seed_experiment, seed_data, seed_loops


def test_seed_table_is_reproduced(xp):
    table, batch_loss = run_seed_experiment(backend=xp)
    assert len(batch_loss) == 10_000
    np.testing.assert_allclose(table, SEED_TABLE, rtol=TOLERANCE, atol=0)


def test_seed_data_is_drawn_like_the_notebook():
    x = np.random.RandomState(0).randn(1000, 50)  # what np.random.seed(0); np.random.randn draws
    data = seed_data()
    np.testing.assert_array_equal(data.x, x)
    assert data.w.shape == (250,) and data.b.shape == (5,)


def test_the_seeds_own_loops_give_its_first_printed_loss():
    (first,) = seed_loops(seed_data(), epochs=1)
    assert first == pytest.approx(SEED_TABLE[0], rel=1e-12)


def test_demo_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    png = tmp_path / "curve.png"
    assert run_demo(plot=str(png)) == 0
    out = capsys.readouterr().out
    assert "reproduced" in out and repr(SEED_TABLE[-1]) in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
