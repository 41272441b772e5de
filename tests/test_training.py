"""The fit loop: history, shuffling, validation, early stopping, callbacks, divergence, memory, progress."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy
from tests.conftest import assert_close


def regression(n: int = 64, seed: int = 0, d: int = 4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(X @ rng.normal(size=(d, 2)))


def classification(n: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    y = rng.integers(0, 3, size=n)
    return centers[y] + rng.normal(scale=0.7, size=(n, 2)), y


def test_history_records_epochs_and_every_step(xp):
    X, Y = regression(50)
    net = fx.FlatMLP([4, 6, 2], ["tanh", "identity"], backend=xp, dtype="float64", seed=0)
    hist = net.fit(X, Y, epochs=3, batch_size=8, optimizer=fx.SGD(lr=0.1), progress=False, seed=1)
    assert len(hist.loss) == 3 and len(hist.batch_loss) == 3 * 7 and len(hist.epoch_time) == 3
    sizes = np.array([8] * 6 + [2], dtype=float)
    assert hist.loss[0] == pytest.approx(np.dot(hist.batch_loss[:7], sizes) / 50, rel=1e-12)
    assert net.history_ is hist and net.loss_ == "mse"


def test_batch_loss_is_the_loss_before_the_update(xp):
    X, Y = regression(12)
    net = fx.FlatMLP([4, 2], "identity", backend=xp, dtype="float64", seed=0)
    before = net.evaluate(X[:12], Y[:12])
    hist = net.fit(X, Y, epochs=1, batch_size=12, optimizer=fx.SGD(lr=0.1), progress=False)
    assert hist.batch_loss[0] == pytest.approx(before, rel=1e-13)


def test_shuffling_is_deterministic_from_the_seed_and_changes_the_order():
    X, Y = regression(40)

    def run(seed, shuffle=True):
        net = fx.FlatMLP([4, 5, 2], ["tanh", "identity"], dtype="float64", seed=0)
        net.fit(X, Y, epochs=2, batch_size=5, optimizer=fx.SGD(lr=0.1), shuffle=shuffle, seed=seed, progress=False)
        return net.params

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    assert not np.array_equal(run(3), run(None, shuffle=False))


def test_shuffle_function_gives_each_epochs_order(xp):
    X, Y = regression(30)
    orders = [np.random.default_rng(e).permutation(30) for e in range(3)]
    calls = []

    def order(epoch, n):
        calls.append((epoch, n))
        return orders[epoch]

    kw = dict(batch_size=7, optimizer=fx.SGD(lr=0.05), progress=False)
    net = fx.FlatMLP([4, 5, 2], ["tanh", "identity"], backend=xp, dtype="float64", seed=0)
    net.fit(X, Y, epochs=3, shuffle=order, **kw)
    ref = fx.FlatMLP([4, 5, 2], ["tanh", "identity"], backend=xp, dtype="float64", seed=0)
    for o in orders:  # the same epochs, on data already in each epoch's order
        ref.fit(X[o], Y[o], epochs=1, shuffle=False, **kw)
    assert calls == [(0, 30), (1, 30), (2, 30)]
    assert_close(net.params, to_numpy(ref.params), rtol=1e-12)


@pytest.mark.parametrize(
    "bad", [np.arange(29), np.arange(30) + 1, np.zeros(30, dtype=int), np.arange(30.0), np.arange(60).reshape(30, 2)]
)
def test_shuffle_function_must_return_a_permutation(bad):
    X, Y = regression(30)
    net = fx.FlatMLP([4, 2], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match="shuffle: order"):
        net.fit(X, Y, epochs=1, shuffle=lambda epoch, n: bad, progress=False)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("where", ["checkpoint", "resume"])
def test_shuffle_function_cannot_be_checkpointed(where, tmp_path):
    X, Y = regression(30)
    with pytest.raises(ValueError, match="shuffle"):
        fx.FlatMLP([4, 2], seed=0).fit(
            X, Y, epochs=1, shuffle=lambda e, n: np.arange(n), progress=False, **{where: tmp_path / "run.ckpt"}
        )


def test_validation_loss_and_accuracy_for_classification(xp):
    X, y = classification()
    net = fx.FlatMLP([2, 16, 3], ["relu", "identity"], backend=xp, dtype="float64", seed=0)
    hist = net.fit(
        X[:60],
        y[:60],
        epochs=15,
        batch_size=10,
        loss="cross_entropy",
        optimizer=fx.Adam(lr=0.05),
        validation_data=(X[60:], y[60:]),
        seed=0,
        progress=False,
    )
    assert len(hist.val_loss) == len(hist.val_accuracy) == 15
    assert hist.val_accuracy[-1] == pytest.approx(net.score(X[60:], y[60:]), abs=1e-12)
    assert hist.val_accuracy[-1] > 0.85
    assert hist.val_loss[-1] == pytest.approx(net.evaluate(X[60:], y[60:]), rel=1e-12)


def test_regression_has_no_accuracy_and_scores_r2():
    X, Y = regression(80)
    net = fx.FlatMLP([4, 16, 2], ["tanh", "identity"], dtype="float64", seed=0)
    hist = net.fit(
        X, Y, epochs=30, batch_size=8, optimizer=fx.Adam(lr=0.02), validation_data=(X, Y), seed=0, progress=False
    )
    assert hist.val_accuracy == []
    pred = net.predict(X)
    r2 = 1 - ((Y - pred) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0)
    assert net.score(X, Y) == pytest.approx(r2.mean(), rel=1e-12)
    assert net.score(X, Y) > 0.8


def test_bce_accuracy_thresholds_logits():
    X, y = classification()
    yb = (y == 0).astype(float)
    net = fx.FlatMLP([2, 8, 1], ["tanh", "identity"], dtype="float64", seed=0)
    net.fit(X, yb, epochs=20, batch_size=10, loss="bce", optimizer=fx.Adam(lr=0.05), seed=0, progress=False)
    expected = np.mean((net.forward(X)[:, 0] > 0) == (yb > 0.5))
    assert net.score(X, yb) == pytest.approx(expected) and expected > 0.9


def test_early_stopping_restores_the_best_weights(xp):
    X, Y = regression(40, seed=1)
    Xv, Yv = regression(40, seed=2)
    snapshots = []
    net = fx.FlatMLP([4, 32, 2], ["relu", "identity"], backend=xp, dtype="float64", seed=0)
    hist = net.fit(
        X,
        Y,
        epochs=60,
        batch_size=4,
        optimizer=fx.SGD(lr=0.05, momentum=0.9),
        validation_data=(Xv, Yv),
        patience=3,
        seed=0,
        progress=False,
        callbacks=lambda n, h: snapshots.append(np.array(to_numpy(n.params))),
    )
    best = int(np.argmin(hist.val_loss))
    assert hist.stopped_early and hist.best_epoch == best + 1  # epochs are counted from 1
    assert len(hist.loss) == best + 1 + 3
    assert_close(net.params, snapshots[best], rtol=0)


def test_min_delta_counts_small_improvements_as_none():
    X, Y = regression(40)
    net = fx.FlatMLP([4, 4, 2], ["tanh", "identity"], dtype="float64", seed=0)
    hist = net.fit(X, Y, epochs=50, batch_size=40, optimizer=fx.SGD(lr=1e-4), patience=2, min_delta=1.0, progress=False)
    assert hist.loss and len(hist.loss) == 3 and hist.best_epoch == 1


def test_callback_receives_history_and_can_stop(xp):
    X, Y = regression(20)
    seen = []

    def stop_after_two(net, history):
        seen.append((net, history.epochs, history.loss[-1]))
        return history.epochs == 2

    net = fx.FlatMLP([4, 2], "identity", backend=xp, dtype="float64", seed=0)
    hist = net.fit(X, Y, epochs=10, optimizer=fx.SGD(lr=0.1), callbacks=[stop_after_two], progress=False)
    assert [s[1] for s in seen] == [1, 2] and seen[0][0] is net
    assert hist.epochs == 2 and hist.stopped_early


def test_divergence_restores_the_parameters_from_before_the_failing_step(xp):
    X = np.ones((3, 2)) * 10
    Y = np.zeros((3, 1))
    net = fx.FlatMLP([2, 8, 1], ["relu", "identity"], backend=xp, dtype="float64", seed=0)
    ref = fx.FlatMLP([2, 8, 1], ["relu", "identity"], dtype="float64", seed=0)
    opt = fx.SGD(lr=1e150, momentum=0.5)
    with pytest.raises(fx.DivergenceError, match=r"non-finite .* at epoch 1, step 3") as info:
        net.fit(X, Y, epochs=5, batch_size=1, optimizer=opt, shuffle=False, progress=False)
    assert (info.value.epoch, info.value.step) == (1, 3)  # counted from 1, as everywhere a user sees
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    params = to_numpy(net.params)
    assert np.all(np.isfinite(params)) and np.all(np.isfinite(to_numpy(opt.state["momentum_buffer"])))
    if not net.flat_params.backend.mutable or net.flat_params.backend.is_gpu:
        # JAX (one compiled program per epoch) and GPUs (losses read once per epoch, no host sync per
        # step): the epoch's start is restored, as documented
        assert_close(params, ref.params, rtol=0)
        return
    ref_opt = fx.SGD(lr=1e150, momentum=0.5)
    ref.fit(X[:2], Y[:2], epochs=1, batch_size=1, optimizer=ref_opt, shuffle=False, progress=False)
    assert_close(params, ref.params, rtol=0)  # bit-identical: the steps before were replayed
    assert_close(opt.state["momentum_buffer"], ref_opt.state["momentum_buffer"], rtol=0)
    assert opt.t == ref_opt.t == 2


@pytest.mark.parametrize("batch_size", [32, 64])
def test_an_update_that_overflows_never_leaves_inf_weights(xp, batch_size):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 4)), rng.normal(size=(64, 2))
    net = fx.FlatMLP([4, 16, 2], ["relu", "identity"], backend=xp, dtype="float32", seed=0)
    before = np.array(to_numpy(net.params))
    with pytest.raises(fx.DivergenceError, match="non-finite"):
        net.fit(X, Y, epochs=1, batch_size=batch_size, optimizer=fx.SGD(3e38), shuffle=False, progress=False)
    np.testing.assert_array_equal(to_numpy(net.params), before)  # the first step overflowed


@pytest.mark.parametrize("make", [lambda: fx.Adam(lr=1e-3), lambda: fx.RMSprop(lr=1e-3)])
def test_a_second_moment_that_overflows_is_caught_although_the_weights_stay_finite(make):
    # g^2 overflows float32 while g does not: v becomes inf and every later update would be 0.
    X = np.full((4, 1), 1e19)
    Y = np.zeros((4, 1))
    net = fx.FlatMLP([1, 1], "identity", dtype="float32", seed=0)
    opt = make()
    with pytest.raises(fx.DivergenceError):
        net.fit(X, Y, epochs=1, batch_size=4, optimizer=opt, progress=False)
    assert all(np.all(np.isfinite(to_numpy(v))) for v in opt.state.values())


def test_a_schedule_returning_inf_is_a_clear_error_naming_the_step():
    X, Y = regression(16)
    net = fx.FlatMLP([4, 2], "identity", seed=0)
    before = net.params.copy()

    def bad(t):
        return 0.1 if t < 3 else float("inf")

    with pytest.raises(
        ValueError, match=r"lr: the schedule .* returned inf for update 4 \(t=3\); expected a finite number >= 0"
    ):
        net.fit(X, Y, epochs=1, batch_size=2, optimizer=fx.SGD(bad), shuffle=False, progress=False)
    assert np.all(np.isfinite(net.params)) and not np.array_equal(net.params, before)


@pytest.mark.parametrize("value", [-0.1, float("nan"), "fast"])
def test_a_schedule_value_must_be_a_finite_non_negative_number(value):
    X, Y = regression(8)
    with pytest.raises((ValueError, TypeError), match="lr: the schedule"):
        fx.FlatMLP([4, 2], "identity", seed=0).fit(X, Y, optimizer=fx.SGD(lambda t: value), progress=False)


def test_float64_data_beyond_float32_is_refused_before_training():
    X, Y = regression(10)
    X[3, 1] = 1e300
    net = fx.FlatMLP([4, 2], "identity", dtype="float32", seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"^X: holds 1e\+300, beyond the largest float32 value"):
        net.fit(X, Y, progress=False)
    np.testing.assert_array_equal(net.params, before)
    fx.FlatMLP([4, 2], "identity", dtype="float64", seed=0).fit(X / 1e290, Y, epochs=1, progress=False)


def test_epochs_zero_trains_nothing():
    X, Y = regression(10)
    net = fx.FlatMLP([4, 2], "identity", seed=0)
    before = net.params.copy()
    assert net.fit(X, Y, epochs=0, optimizer=fx.SGD(lr=1.0), progress=False).loss == []
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("x_dtype", [np.float64, np.float32])
def test_fit_memory_does_not_grow_with_the_dataset(x_dtype):
    # The working set is params + grads + optimizer state + one batch: a dataset 10x larger
    # may only add the shuffle permutation (8 bytes/sample) and the per-step loss record.
    def peak(n: int) -> int:
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n, 200)).astype(x_dtype)
        Y = rng.normal(size=(n, 3))
        net = fx.FlatMLP([200, 16, 3], ["relu", "identity"], dtype="float64", seed=0)
        net.fit(X[:64], Y[:64], epochs=1, batch_size=32, optimizer=fx.Adam(), progress=False)  # warm caches
        tracemalloc.start()
        net.fit(X, Y, epochs=1, batch_size=32, optimizer=fx.Adam(), seed=0, progress=False)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    small, large = peak(2_000), peak(20_000)
    per_sample_allowance = 8 + 8  # permutation index, and a share of the per-step loss record
    data_growth = 18_000 * 200 * np.dtype(x_dtype).itemsize
    assert large - small < 18_000 * per_sample_allowance + 200_000
    assert large - small < 0.05 * data_growth


def test_history_plot_returns_a_figure(tmp_path):
    X, Y = regression(20)
    net = fx.FlatMLP([4, 2], "identity", seed=0)
    hist = net.fit(X, Y, epochs=3, optimizer=fx.SGD(lr=0.1), validation_data=(X, Y), patience=5, progress=False)
    fig = hist.plot(log_scale=True)
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].lines) >= 2
    fig.savefig(tmp_path / "h.png")


def test_history_round_trips_through_a_dict():
    h = fx.History(loss=[1.0, 0.5], batch_loss=[1.0, 0.5], val_loss=[2.0, float("nan")], best_epoch=1)
    back = fx.History.from_dict(h.to_dict())
    assert back.loss == h.loss and np.isnan(back.val_loss[1]) and back.best_epoch == 1
    with pytest.raises(ValueError, match="unexpected fields"):
        fx.History.from_dict({"bogus": []})


def test_progress_bars_write_to_stderr(capsys):
    X, Y = regression(64)
    net = fx.FlatMLP([4, 2], "identity", seed=0)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.SGD(lr=0.1), progress=True)
    err = capsys.readouterr().err
    assert "epochs" in err and "loss=" in err


def test_progress_is_off_by_default_when_not_a_terminal(capsys):
    X, Y = regression(16)
    fx.FlatMLP([4, 2], "identity", seed=0).fit(X, Y, epochs=1, optimizer=fx.SGD(lr=0.1))
    assert capsys.readouterr().err == ""


def test_initial_epoch_continues_the_shuffle_stream_of_one_long_fit():
    X, Y = regression(40)
    long_net = fx.FlatMLP([4, 6, 2], ["tanh", "identity"], dtype="float64", seed=0)
    long_hist = long_net.fit(X, Y, epochs=4, batch_size=6, optimizer=fx.SGD(0.05, momentum=0.5), seed=7, progress=False)
    net = fx.FlatMLP([4, 6, 2], ["tanh", "identity"], dtype="float64", seed=0)
    opt = fx.SGD(0.05, momentum=0.5)
    batch_losses = []
    for k in range(4):
        hist = net.fit(X, Y, epochs=k + 1, initial_epoch=k, batch_size=6, optimizer=opt, seed=7, progress=False)
        batch_losses += hist.batch_loss
    np.testing.assert_array_equal(net.params, long_net.params)
    assert batch_losses == long_hist.batch_loss


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 2, "initial_epoch": 3}, "initial_epoch: expected at most epochs=2, got 3"),
        ({"initial_epoch": -1}, ">= 0"),
    ],
)
def test_bad_initial_epoch(kwargs, match):
    X, Y = regression(8)
    with pytest.raises(ValueError, match=match):
        fx.FlatMLP([4, 2], "identity").fit(X, Y, progress=False, **kwargs)
