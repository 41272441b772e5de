"""FlatEnsemble: E networks in one (E, n_params) buffer, each member exactly the network trained alone."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy
from tests.conftest import assert_close, backend_unavailable

SIZES = [3, 8, 2]
ACTS = ["tanh", "identity"]
SEEDS = [10, 11, 12]
#: The mutable backends that run here (the others skip, as with the ``xp`` fixture).
MUTABLE_BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(bool(why := backend_unavailable(name)), reason=why or ""))
    for name in ("numpy", "torch", "array_api_strict")
]
TOL = {"float64": 1e-12, "float32": 1e-5}


def _data(n: int = 61, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.stack([np.sin(X.sum(1)), np.cos(X[:, 0])], axis=1)


def _row(ens: fx.FlatEnsemble, i: int) -> np.ndarray:
    return np.asarray(to_numpy(ens.params))[i]


def _solo(backend: str = "numpy", dtype: str = "float64", seed: int = 10) -> fx.FlatMLP:
    return fx.FlatMLP(SIZES, ACTS, backend=backend, dtype=dtype, seed=seed)


def _ensemble(backend: str = "numpy", dtype: str = "float64", seeds: list[int] = SEEDS) -> fx.FlatEnsemble:
    return fx.FlatEnsemble(SIZES, len(seeds), ACTS, backend=backend, dtype=dtype, seed=seeds)


# ------------------------------------------------------------------ the buffer and its views
def test_params_is_one_buffer_with_member_rows_and_layer_stacks(xp: str) -> None:
    ens = _ensemble(xp)
    lay = ens.layout
    assert ens.params.shape == (3, lay.n_params)
    assert ens.w.shape == (3, lay.w_len) and ens.b.shape == (3, lay.b_len)
    assert ens.weight(0).shape == (3, 8, 3) and ens.weight(-1).shape == (3, 2, 8)
    assert ens.bias(0).shape == (3, 8) and ens.bias(1).shape == (3, 2)
    host = np.asarray(to_numpy(ens.params))
    assert_close(ens.weight(1), host[:, lay.w_slice(1)].reshape(3, 2, 8), rtol=0)
    assert_close(ens.bias(1), host[:, lay.w_len + lay.b_offsets[1] :], rtol=0)


@pytest.mark.parametrize("backend", MUTABLE_BACKENDS)
def test_layer_views_write_into_the_one_buffer(backend: str) -> None:
    ens = _ensemble(backend)
    ens.weight(1)[2, 1, 5] = 7.0
    ens.bias(0)[1, 3] = -3.0
    host = np.asarray(to_numpy(ens.params))
    assert host[2, ens.layout.w_offsets[1] + 5 + 8 * 1] == 7.0
    assert host[1, ens.layout.w_len + 3] == -3.0


def test_members_start_as_flatmlps_with_their_seeds_bit_for_bit(xp: str) -> None:
    ens = _ensemble(xp, "float32")
    for i, s in enumerate(SEEDS):
        np.testing.assert_array_equal(_row(ens, i), np.asarray(to_numpy(_solo(xp, "float32", s).params)))


def test_an_int_seed_spawns_one_independent_stream_per_member() -> None:
    ens = fx.FlatEnsemble(SIZES, 3, ACTS, dtype="float64", seed=5)
    streams = np.random.SeedSequence(5).spawn(3)
    for i in range(3):
        net = fx.FlatMLP(SIZES, ACTS, dtype="float64", seed=np.random.default_rng(streams[i]))
        np.testing.assert_array_equal(_row(ens, i), net.params)
    assert not np.array_equal(_row(ens, 0), _row(ens, 1))
    np.testing.assert_array_equal(ens.params, fx.FlatEnsemble(SIZES, 3, ACTS, dtype="float64", seed=5).params)


@pytest.mark.parametrize("backend", MUTABLE_BACKENDS)
def test_member_is_a_zero_copy_view_of_its_row(backend: str) -> None:
    X, Y = _data()
    ens = _ensemble(backend)
    before = np.asarray(to_numpy(ens.params)).copy()
    net = ens.member(1)
    net.fit(X, Y, epochs=1, batch_size=8, optimizer=fx.SGD(lr=0.1), seed=0)
    after = np.asarray(to_numpy(ens.params))
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    np.testing.assert_array_equal(after[1], np.asarray(to_numpy(net.params)))
    assert not np.array_equal(after[1], before[1])


def test_member_on_jax_is_a_copy() -> None:
    pytest.importorskip("jax")
    ens = _ensemble("jax")
    before = np.asarray(to_numpy(ens.params)).copy()
    net = ens.member(0)
    np.testing.assert_array_equal(np.asarray(to_numpy(net.params)), before[0])
    X, Y = _data()
    net.fit(X, Y, epochs=1, batch_size=8, optimizer=fx.SGD(lr=0.1), seed=0)
    np.testing.assert_array_equal(np.asarray(to_numpy(ens.params)), before)


def test_from_members_stacks_copies_of_the_networks() -> None:
    nets = [_solo(seed=s) for s in SEEDS]
    ens = fx.FlatEnsemble.from_members(nets)
    np.testing.assert_array_equal(ens.params, np.stack([n.params for n in nets]))
    ens.params[0, 0] = 99.0
    assert nets[0].params[0] != 99.0


# ------------------------------------------------------------------ training: each member equals the network alone
OPTIMIZERS = {
    "sgd-momentum": lambda i: fx.SGD(lr=[0.1, 0.05, 0.02][i], momentum=[0.0, 0.9, 0.5][i], weight_decay=1e-3 * i),
    "nesterov": lambda i: fx.SGD(lr=0.05, momentum=[0.9, 0.5, 0.7][i], nesterov=True, clip_norm=[None, 0.5, 1.0][i]),
    "adam": lambda i: fx.Adam(lr=[0.01, 0.02, 0.005][i], betas=(0.9, [0.999, 0.99, 0.9][i]), weight_decay=1e-3 * i),
    "adamw": lambda i: fx.AdamW(lr=fx.StepDecay(0.01, step_size=3, gamma=[0.5, 0.9, 0.1][i])),
    "rmsprop": lambda i: fx.RMSprop(lr=0.01, momentum=[0.0, 0.3, 0.6][i], centered=True, eps=[1e-8, 1e-6, 1e-7][i]),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_member_equals_the_network_trained_alone(xp: str, dtype: str, name: str) -> None:
    X, Y = _data()
    make = OPTIMIZERS[name]
    ens = _ensemble(xp, dtype)
    hist = ens.fit(X, Y, epochs=3, batch_size=8, optimizer=[make(i) for i in range(3)], seed=[1, 2, 3])
    for i, s in enumerate(SEEDS):
        net = _solo(xp, dtype, s)
        alone = net.fit(X, Y, epochs=3, batch_size=8, optimizer=make(i), seed=i + 1)
        assert_close(_row(ens, i), net.params, rtol=0, atol=TOL[dtype])
        assert_close(hist[i].loss, alone.loss, rtol=TOL[dtype] * 10)


def test_an_int_shuffle_seed_gives_every_member_the_order_of_that_seed(xp: str) -> None:
    X, Y = _data()
    ens = _ensemble(xp)
    ens.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.Adam(lr=0.01), seed=4)
    for i, s in enumerate(SEEDS):
        net = _solo(xp, seed=s)
        net.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.Adam(lr=0.01), seed=4)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)


def test_without_shuffle_every_member_sees_the_data_in_order() -> None:
    X, Y = _data()
    ens = _ensemble()
    ens.fit(X, Y, epochs=2, batch_size=7, optimizer=fx.SGD(lr=0.1), shuffle=False)
    for i, s in enumerate(SEEDS):
        net = _solo(seed=s)
        net.fit(X, Y, epochs=2, batch_size=7, optimizer=fx.SGD(lr=0.1), shuffle=False)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_sample_weights_and_class_labels_per_member_orders(backend: str) -> None:
    if backend == "jax":
        pytest.importorskip("jax")
    X, _ = _data()
    labels = (X[:, 0] > 0).astype(np.int64)
    sw = np.random.default_rng(3).uniform(0.1, 2.0, size=X.shape[0])
    ens = _ensemble(backend)
    kw = {"epochs": 2, "batch_size": 8, "optimizer": fx.Adam(lr=0.02), "loss": "cross_entropy", "sample_weight": sw}
    ens.fit(X, labels, seed=[5, 6, 7], **kw)
    for i, s in enumerate(SEEDS):
        net = _solo(backend, seed=s)
        net.fit(X, labels, seed=5 + i, **kw)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)


def test_a_second_fit_continues_the_optimizer_state_as_alone() -> None:
    X, Y = _data()
    opts = [fx.Adam(lr=0.01) for _ in SEEDS]
    ens = _ensemble()
    for _ in range(2):
        ens.fit(X, Y, epochs=1, batch_size=8, optimizer=opts, seed=[1, 2, 3])
    for i, s in enumerate(SEEDS):
        net, opt = _solo(seed=s), fx.Adam(lr=0.01)
        for _ in range(2):
            net.fit(X, Y, epochs=1, batch_size=8, optimizer=opt, seed=i + 1)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)


def test_a_new_optimizer_starts_afresh_as_alone() -> None:
    X, Y = _data()
    ens = _ensemble()
    for _ in range(2):
        ens.fit(X, Y, epochs=1, batch_size=8, optimizer=fx.Adam(lr=0.01), seed=1)
    for s in SEEDS:
        net = _solo(seed=s)
        for _ in range(2):
            net.fit(X, Y, epochs=1, batch_size=8, optimizer=fx.Adam(lr=0.01), seed=1)
        assert_close(_row(ens, SEEDS.index(s)), net.params, rtol=0, atol=1e-12)


def test_bootstrap_trains_each_member_on_its_own_resample() -> None:
    X, Y = _data()
    seeds = [1, 2, 3]
    ens = _ensemble(seeds=[10, 10, 10])
    ens.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.SGD(lr=0.1), seed=seeds, bootstrap=True)
    n = X.shape[0]
    for i, s in enumerate(seeds):
        rows = np.random.default_rng(np.random.SeedSequence(s, spawn_key=(2**32 + i,))).integers(0, n, n)
        net = _solo(seed=10)
        net.fit(X[rows], Y[rows], epochs=2, batch_size=8, optimizer=fx.SGD(lr=0.1), seed=s)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)
    assert not np.array_equal(_row(ens, 0), _row(ens, 1))


def test_optimizer_state_and_gradients_are_one_stacked_buffer_each() -> None:
    X, Y = _data()
    ens = _ensemble()
    ens.fit(X, Y, epochs=1, batch_size=8, optimizer=fx.Adam(lr=0.01))
    assert ens._opt_state is not None
    buffers = ens._opt_state[2]
    assert sorted(buffers) == ["exp_avg", "exp_avg_sq"]
    assert all(b.shape == ens.params.shape for b in buffers.values())


# ------------------------------------------------------------------ early stopping and divergence, per member
def test_early_stopping_is_per_member_and_keeps_each_best_row(xp: str) -> None:
    X, Y = _data(80)
    Xv, Yv = _data(30, seed=9)
    kw = {"epochs": 12, "batch_size": 8, "validation_data": (Xv, Yv), "patience": 2}
    make = [lambda: fx.SGD(lr=0.3), lambda: fx.SGD(lr=0.01), lambda: fx.SGD(lr=0.6, momentum=0.9)]
    ens = _ensemble(xp)
    hist = ens.fit(X, Y, optimizer=[m() for m in make], seed=[1, 2, 3], **kw)
    for i, s in enumerate(SEEDS):
        net = _solo(xp, seed=s)
        alone = net.fit(X, Y, optimizer=make[i](), seed=i + 1, **kw)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)
        assert hist[i].best_epoch == alone.best_epoch
        assert hist[i].epochs == alone.epochs and hist[i].stopped_early == alone.stopped_early
        assert_close(hist[i].val_loss, alone.val_loss, rtol=1e-6)  # host float64 vs backend sums


def test_one_diverging_member_is_named_restored_and_frozen_the_others_go_on() -> None:
    X, Y = _data()
    lrs = [0.05, 1e200, 0.02]
    ens = _ensemble()
    with pytest.warns(RuntimeWarning, match=r"member\(s\) 1 diverged .* at epoch 1"):
        hist = ens.fit(X, Y, epochs=3, batch_size=8, optimizer=[fx.SGD(lr=lr) for lr in lrs], seed=[1, 2, 3])
    assert ens.diverged_ == {1: 1}
    np.testing.assert_array_equal(_row(ens, 1), _solo(seed=11).params)  # the start of the epoch it diverged in
    assert len(hist[1].loss) == 1 and len(hist[0].loss) == 3
    for i in (0, 2):
        net = _solo(seed=SEEDS[i])
        net.fit(X, Y, epochs=3, batch_size=8, optimizer=fx.SGD(lr=lrs[i]), seed=i + 1)
        assert_close(_row(ens, i), net.params, rtol=0, atol=1e-12)


def test_every_member_diverging_raises() -> None:
    X, Y = _data()
    ens = _ensemble()
    with pytest.raises(fx.DivergenceError, match="every member diverged"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ens.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.SGD(lr=1e200))
    assert np.all(np.isfinite(ens.params))


# ------------------------------------------------------------------ inference
def test_predict_is_the_members_mean_with_their_spread(xp: str) -> None:
    X, _ = _data()
    ens = _ensemble(xp)
    each = np.stack([np.asarray(to_numpy(_solo(xp, seed=s).predict(X))) for s in SEEDS])
    assert ens.predict(X, members=True).shape == (3, X.shape[0], 2)
    assert_close(ens.predict(X, members=True), each, rtol=1e-12)
    mean, std = ens.predict(X, return_std=True)
    assert_close(mean, each.mean(axis=0), rtol=1e-12)
    assert_close(std, each.std(axis=0), rtol=1e-9)
    assert_close(ens.predict(X), each.mean(axis=0), rtol=1e-12)


def test_predict_proba_averages_the_members_probabilities() -> None:
    X, _ = _data()
    ens = _ensemble()
    probs = np.stack([_solo(seed=s).predict_proba(X) for s in SEEDS])
    assert_close(ens.predict_proba(X), probs.mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(ens.predict_class(X), probs.mean(axis=0).argmax(axis=1))


def test_select_and_best_keep_the_members_that_scored_best() -> None:
    X, Y = _data()
    ens = _ensemble()
    np.testing.assert_array_equal(ens.select([2, 0]).params, ens.params[[2, 0]])
    scores = ens.evaluate_members(X, Y)
    best = ens.best(2, validation_data=(X, Y))
    np.testing.assert_array_equal(best.params, ens.params[np.argsort(scores)[:2]])
    ens.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.SGD(lr=0.05), validation_data=(X, Y))
    last = np.array([h.val_loss[-1] for h in ens.history_ or []])
    np.testing.assert_array_equal(ens.best(1).params, ens.params[[int(np.argmin(last))]])


# ------------------------------------------------------------------ files
def test_save_and_load_round_trip_in_one_file(tmp_path, xp: str) -> None:
    ens = _ensemble()
    path = tmp_path / "ens.safetensors"
    ens.save(path)
    back = fx.FlatEnsemble.load(path, backend=xp)
    assert (back.n_models, back.layout, back.activations, back.dtype_name) == (3, ens.layout, tuple(ACTS), "float64")
    assert_close(back.params, ens.params, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["ens.safetensors"]


def _header(path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


@pytest.mark.parametrize("damage", ["truncate", "flip", "model file"])
def test_malformed_or_foreign_files_are_refused(tmp_path, damage: str) -> None:
    path = tmp_path / "f.safetensors"
    if damage == "model file":
        _solo().save(path)
    else:
        _ensemble().save(path)
        raw = bytearray(path.read_bytes())
        if damage == "truncate":
            raw = raw[:-5]
        else:
            raw[-3] ^= 0x40
        path.write_bytes(bytes(raw))
    with pytest.raises(fx.ModelFileError):
        fx.FlatEnsemble.load(path)


def test_a_single_network_refuses_an_ensemble_file(tmp_path) -> None:
    path = tmp_path / "e.safetensors"
    _ensemble().save(path)
    assert json.loads(_header(path)["__metadata__"]["flatnet_xp"])["kind"] == "ensemble"
    with pytest.raises(fx.ModelFileError, match="kind 'ensemble'"):
        fx.FlatMLP.load(path)


# ------------------------------------------------------------------ compiled JAX
def test_a_jax_epoch_is_one_compiled_program_reused_across_fits() -> None:
    pytest.importorskip("jax")
    from flatnet_xp.ensemble import _compiled

    X, Y = _data()
    ens = _ensemble("jax")
    opt = fx.SGD(lr=0.05)
    ens.fit(X, Y, epochs=2, batch_size=8, optimizer=opt, seed=1)
    count = len(_compiled._PROGRAMS)
    ens.fit(X, Y, epochs=2, batch_size=8, optimizer=opt, seed=2)
    assert len(_compiled._PROGRAMS) == count


# ------------------------------------------------------------------ arguments
BAD = {
    "n_models": (lambda: fx.FlatEnsemble(SIZES, 0), ValueError, "n_models"),
    "seed length": (lambda: fx.FlatEnsemble(SIZES, 3, seed=[1, 2]), ValueError, "seed: expected an int or 3"),
    "fit seed length": (lambda: _ensemble().fit(*_data(), seed=[1]), ValueError, "seed: expected an int or 3"),
    "optimizer count": (
        lambda: _ensemble().fit(*_data(), optimizer=[fx.SGD(lr=0.1)] * 2),
        ValueError,
        "optimizer: expected one flatnet_xp optimizer or a list of 3",
    ),
    "optimizer classes": (
        lambda: _ensemble().fit(*_data(), optimizer=[fx.SGD(lr=0.1), fx.Adam(), fx.Adam()]),
        ValueError,
        "one class",
    ),
    "nesterov differs": (
        lambda: _ensemble().fit(*_data(), optimizer=[fx.SGD(0.1, 0.9, True), fx.SGD(0.1, 0.9), fx.SGD(0.1)]),
        ValueError,
        "share nesterov",
    ),
    "lbfgs": (lambda: _ensemble().fit(*_data(), optimizer=fx.LBFGS()), TypeError, "optimizer"),
    "shuffle": (lambda: _ensemble().fit(*_data(), shuffle="yes"), TypeError, "shuffle: expected a bool"),
    "bootstrap": (lambda: _ensemble().fit(*_data(), bootstrap=1), TypeError, "bootstrap: expected a bool"),
    "custom loss": (
        lambda: _ensemble().fit(*_data(), loss=fx.Loss("mine", "real", lambda *a: 0, lambda *a: 0)),
        ValueError,
        "loss: ensembles train with one of",
    ),
    "member index": (lambda: _ensemble().member(3), IndexError, r"i: expected a member index in \[0, 2\]"),
    "select": (lambda: _ensemble().select([0, 5]), IndexError, "indices"),
    "best k": (lambda: _ensemble().best(4, validation_data=_data()), ValueError, "k: expected at most n_models=3"),
    "best without validation": (lambda: _ensemble().best(1), ValueError, "validation_data"),
    "members flag": (lambda: _ensemble().predict(_data()[0], members=1), TypeError, "members"),
    "from_members": (
        lambda: fx.FlatEnsemble.from_members([_solo(), fx.FlatMLP([3, 4, 2])]),
        ValueError,
        "member 1 has layout",
    ),
    "X width": (lambda: _ensemble().predict(np.zeros((2, 4))), ValueError, "X: expected 3 features"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_are_named(case: str) -> None:
    make, kind, message = BAD[case]
    with pytest.raises(kind, match=message):
        make()


def test_bad_fit_arguments_change_nothing() -> None:
    ens = _ensemble()
    before = ens.params.copy()
    with pytest.raises(ValueError):
        ens.fit(*_data(), optimizer=[fx.SGD(lr=0.1)] * 2)
    np.testing.assert_array_equal(ens.params, before)


# ------------------------------------------------------------------ callbacks, progress, divergence on JAX, bench
def test_a_callback_returning_true_stops_every_member() -> None:
    X, Y = _data()
    seen = []

    def stop_after_two(ens, histories):
        seen.append((ens.n_models, len(histories), histories[0].epochs))
        return histories[0].epochs == 2

    hist = _ensemble().fit(X, Y, epochs=5, batch_size=8, optimizer=fx.SGD(lr=0.05), callbacks=stop_after_two)
    assert seen == [(3, 3, 1), (3, 3, 2)]
    assert [h.epochs for h in hist] == [2, 2, 2] and all(h.stopped_early for h in hist)


def test_divergence_of_one_member_on_compiled_jax_spares_the_others() -> None:
    pytest.importorskip("jax")
    X, Y = _data()
    lrs = [0.05, 1e200, 0.02]
    ens = _ensemble("jax")
    with pytest.warns(RuntimeWarning, match=r"member\(s\) 1 diverged"):
        ens.fit(X, Y, epochs=2, batch_size=8, optimizer=[fx.SGD(lr=lr) for lr in lrs], seed=[1, 2, 3])
    np.testing.assert_array_equal(_row(ens, 1), np.asarray(to_numpy(_solo("jax", seed=11).params)))
    net = _solo("jax", seed=12)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer=fx.SGD(lr=0.02), seed=3)
    assert_close(_row(ens, 2), net.params, rtol=0, atol=1e-12)


def test_the_ensemble_benchmark_reports_every_way_and_the_ratios(monkeypatch) -> None:
    from flatnet_xp.bench import ensembles

    tiny = {"sizes": [4, 3], "acts": ["sigmoid"], "E": 3, "batch": 4, "dtype": "float64", "n": 32, "lr": 0.1}
    monkeypatch.setattr(ensembles, "CONFIGS", {"tiny": tiny})
    row = ensembles.run_ensemble_benchmarks(repeats=1, skip=("jax", "torch"))["tiny"]
    assert set(row) == {"ensemble", "loop", "loop / ensemble"}
    assert row["loop / ensemble"] == pytest.approx(row["loop"] / row["ensemble"])


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce", "poisson"])
def test_validation_metrics_per_member_equal_the_network_alone(loss: str) -> None:
    rng = np.random.default_rng(0)
    X, Y = rng.random((40, 3)), rng.random((40, 2))
    targets = {"mse": Y, "cross_entropy": (X[:, 0] > 0.5).astype(int), "bce": (Y > 0.5) * 1.0, "poisson": Y}[loss]
    val = (X, targets, rng.uniform(0.5, 2.0, 40))
    hist = _ensemble(seeds=[0, 1]).fit(X, targets, epochs=2, loss=loss, validation_data=val, seed=3)
    for i in range(2):
        alone = _solo(seed=i).fit(X, targets, epochs=2, loss=loss, validation_data=val, seed=3)
        assert_close(hist[i].val_loss, alone.val_loss, rtol=1e-10)
        assert_close(hist[i].val_score, alone.val_score, rtol=1e-10)
        assert hist[i].val_accuracy == alone.val_accuracy


# ------------------------------------------------------------------ checkpoints
def _resumable_fit(ens: fx.FlatEnsemble, epochs: int, **kw):
    X, Y = _data(60)
    Xv, Yv = _data(20, seed=5)
    opts = [fx.Adam(lr=lr) for lr in (0.01, 0.05, 0.3)]
    return ens.fit(X, Y, epochs=epochs, optimizer=opts, batch_size=8, seed=[1, 2, 3], validation_data=(Xv, Yv),
                   patience=3, **kw)  # fmt: skip


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_resuming_a_checkpoint_continues_the_run_exactly(tmp_path, backend: str) -> None:
    if backend == "jax":
        pytest.importorskip("jax")
    path = tmp_path / "run.safetensors"
    straight = _ensemble(backend)
    hist = _resumable_fit(straight, 12)
    _resumable_fit(_ensemble(backend), 5, checkpoint=path)
    resumed = _ensemble(backend, seeds=[7, 7, 7])  # its own weights are replaced by the checkpoint's
    again = _resumable_fit(resumed, 12, resume=path)
    np.testing.assert_array_equal(np.asarray(to_numpy(resumed.params)), np.asarray(to_numpy(straight.params)))
    assert [h.loss for h in again] == [h.loss for h in hist]
    assert [h.best_epoch for h in again] == [h.best_epoch for h in hist]


def test_resuming_a_finished_run_gives_back_what_its_fit_returned(tmp_path) -> None:
    path = tmp_path / "run.safetensors"
    done = _ensemble()
    hist = _resumable_fit(done, 6, checkpoint=path)
    back = _ensemble(seeds=[7, 7, 7])
    again = _resumable_fit(back, 6, resume=path)
    np.testing.assert_array_equal(back.params, done.params)
    assert [h.to_dict() for h in again] == [h.to_dict() for h in hist]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 4}, r"these settings differ: \['batch_size'\]"),
        ({"seed": [4, 5, 6]}, "seed: differs from the checkpoint"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(tmp_path, change, message) -> None:
    path = tmp_path / "run.safetensors"
    _resumable_fit(_ensemble(), 2, checkpoint=path)
    X, Y = _data(60)
    Xv, Yv = _data(20, seed=5)
    kw = {"batch_size": 8, "seed": [1, 2, 3], "validation_data": (Xv, Yv), "patience": 3} | change
    opts = [fx.Adam(lr=lr) for lr in (0.01, 0.05, 0.3)]
    with pytest.raises(ValueError, match=message):
        _ensemble().fit(X, Y, epochs=4, optimizer=opts, resume=path, **kw)


def test_a_model_file_is_not_a_checkpoint_and_a_checkpoint_not_a_model(tmp_path) -> None:
    ckpt, model = tmp_path / "c.safetensors", tmp_path / "m.safetensors"
    _resumable_fit(_ensemble(), 1, checkpoint=ckpt)
    _ensemble().save(model)
    with pytest.raises(fx.ModelFileError, match="kind 'ensemble'"):
        _resumable_fit(_ensemble(), 2, resume=model)
    with pytest.raises(fx.ModelFileError, match="kind 'ensemble_checkpoint'"):
        fx.FlatEnsemble.load(ckpt)


def test_select_equals_stacking_the_chosen_members(xp: str) -> None:
    ens = _ensemble(xp)
    chosen = fx.FlatEnsemble.from_members([ens.member(2), ens.member(0)])
    assert_close(ens.select([2, 0]).params, chosen.params, rtol=0)
    assert ens.best(2, validation_data=_data()).n_models == 2
