"""Optimizers on the flat buffer against torch.optim (float64), schedules and gradient clipping."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy
from flatnet_xp.losses import LOSSES
from tests.conftest import assert_close

HAS_TORCH = importlib.util.find_spec("torch") is not None

# (our optimizer, torch.optim class name, torch kwargs, weight decay applies to weights only)
CASES = {
    "sgd": (lambda: fx.SGD(lr=0.1), "SGD", {"lr": 0.1}),
    "sgd-momentum": (lambda: fx.SGD(lr=0.05, momentum=0.9), "SGD", {"lr": 0.05, "momentum": 0.9}),
    "sgd-nesterov-wd": (
        lambda: fx.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
        "SGD",
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
    ),
    "adam": (lambda: fx.Adam(lr=0.01), "Adam", {"lr": 0.01}),
    "adam-l2": (
        lambda: fx.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
        "Adam",
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05},
    ),
    "adamw": (lambda: fx.AdamW(lr=0.01, weight_decay=0.1), "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    "rmsprop": (lambda: fx.RMSprop(lr=0.01), "RMSprop", {"lr": 0.01}),
    "rmsprop-centered-momentum": (
        lambda: fx.RMSprop(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01),
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
    ),
    "adam-clipped": (lambda: fx.Adam(lr=0.01, clip_norm=0.05), "Adam", {"lr": 0.01}),
}


def _problem(backend: str, sizes=(5, 7, 3)):
    net = fx.FlatMLP(list(sizes), activations=["tanh", "identity"], backend=backend, dtype="float64", seed=2)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(16, sizes[0])), rng.normal(size=(16, sizes[-1]))
    return net, X, Y


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_torch_optim_step_by_step(xp, case):
    import torch

    make, torch_name, kwargs = CASES[case][0], CASES[case][1], dict(CASES[case][2])
    net, X, Y = _problem(xp)
    opt = make()
    w0, b0 = net.get_params()
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    wd = kwargs.pop("weight_decay", 0.0)
    # Weight decay on the weights only: torch gets two parameter groups, biases without decay.
    topt = getattr(torch.optim, torch_name)(
        [{"params": [tw], "weight_decay": wd}, {"params": [tb], "weight_decay": 0.0}], **kwargs
    )
    data = net.flat_params.dataset(X, Y, "mse")
    for step in range(6):
        x, y, _ = data.batch(slice(3 * step, 3 * step + 5))
        net.flat_params.loss_and_grad_into(x, y, None, LOSSES["mse"])
        g = to_numpy(net.grads)
        tw.grad, tb.grad = torch.tensor(g[: net.layout.w_len]), torch.tensor(g[net.layout.w_len :])
        if opt.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_([tw, tb], opt.clip_norm)
        opt.step(net)
        topt.step()
        assert_close(net.w, tw.detach().numpy(), rtol=1e-11, atol=1e-13)
        assert_close(net.b, tb.detach().numpy(), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("case", sorted(CASES))
def test_blocked_threaded_update_equals_the_whole_buffer_update(case, monkeypatch):
    # A net with more than 1M parameters takes the NumPy blocked, multi-threaded path; the
    # array-api-strict backend runs the same update as one whole-buffer call.
    monkeypatch.setenv("FLATNET_XP_THREADS", "2")
    make = CASES[case][0]
    sizes = (300, 1700, 300, 7)  # 1,022,100 weights: w_len is not a multiple of the block size
    nets = {
        b: fx.FlatMLP(sizes, ["relu", "relu", "identity"], backend=b, dtype="float64", seed=0)
        for b in ("numpy", "array_api_strict")
    }
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(8, 300)), rng.normal(size=(8, 7))
    for net in nets.values():
        opt = make()
        for _ in range(3):
            net.flat_params.loss_and_grad_into(
                net.flat_params.backend.asarray(X), net.flat_params.backend.asarray(Y), None, LOSSES["mse"]
            )
            opt.step(net)
    assert net.flat_params.optimizer_state.blocks.threads == 1  # strict: one call
    assert_close(nets["numpy"].params, nets["array_api_strict"].params, rtol=1e-13, atol=1e-15)


def test_numpy_large_buffers_use_blocks_and_threads(monkeypatch):
    monkeypatch.setenv("FLATNET_XP_THREADS", "3")
    net = fx.FlatMLP([1000, 1100], "identity", dtype="float32")
    opt = fx.SGD(lr=0.1)
    opt.bind(net)
    blocks = net.flat_params.optimizer_state.blocks
    assert blocks.blocked and blocks.threads == 3


def test_clip_norm_bounds_the_flat_gradient():
    net, X, Y = _problem("numpy")
    opt = fx.SGD(lr=1.0, clip_norm=1e-3)
    before = net.params.copy()
    net.flat_params.loss_and_grad_into(X, Y, None, LOSSES["mse"])
    raw = np.linalg.norm(net.grads)
    opt.step(net)
    assert raw > 1e-3
    assert np.linalg.norm(net.params - before) == pytest.approx(1e-3 * raw / (raw + 1e-6), rel=1e-9)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (fx.Constant(0.1), [0.1, 0.1, 0.1, 0.1, 0.1]),
        (fx.StepDecay(1.0, step_size=2, gamma=0.5), [1.0, 1.0, 0.5, 0.5, 0.25]),
        (
            fx.Cosine(1.0, total_steps=4),
            [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0],
        ),
        (fx.Warmup(0.8, warmup_steps=4), [0.2, 0.4, 0.6, 0.8, 0.8]),
        (
            fx.Warmup(fx.Cosine(1.0, total_steps=4, min_lr=0.5), warmup_steps=2),
            [0.5, 0.5 + 0.25 * (1 + math.cos(math.pi / 4)), 0.75, 0.5 + 0.25 * (1 + math.cos(3 * math.pi / 4)), 0.5],
        ),
    ],
)
def test_schedules(schedule, expected):
    assert [schedule(t) for t in range(5)] == pytest.approx(expected, rel=1e-12)


def test_optimizer_follows_its_schedule():
    net, X, Y = _problem("numpy")
    lrs = []
    sched = fx.StepDecay(0.1, step_size=1, gamma=0.5)
    opt = fx.SGD(lr=sched)
    for _ in range(3):
        net.flat_params.loss_and_grad_into(X, Y, None, LOSSES["mse"])
        g, before = net.grads.copy(), net.params.copy()
        opt.step(net)
        lrs.append(float(np.mean((before - net.params)[g != 0] / g[g != 0])))
    assert lrs == pytest.approx([0.1, 0.05, 0.025], rel=1e-9)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fx.StepDecay(0.1, step_size=0), "step_size: expected an integer >= 1"),
        (lambda: fx.Cosine(0.1, total_steps=10, min_lr=0.5), "min_lr: expected a finite number"),
        (lambda: fx.Warmup("fast", 3), "base: expected a non-negative number or a schedule"),
        (lambda: fx.Constant(-1.0), "lr: expected a finite number"),
    ],
)
def test_bad_schedules(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_default_optimizer_is_adam_1e3():
    net, X, Y = _problem("numpy")
    ref = net.copy()
    net.fit(X, Y, epochs=2, batch_size=4, seed=0, progress=False)
    ref.fit(X, Y, epochs=2, batch_size=4, seed=0, optimizer=fx.Adam(lr=1e-3), progress=False)
    np.testing.assert_array_equal(net.params, ref.params)


def test_optimizer_state_persists_across_fit_calls_on_the_same_net():
    net, X, Y = _problem("numpy")
    opt = fx.Adam(lr=1e-2)
    net.fit(X, Y, epochs=1, batch_size=4, optimizer=opt, shuffle=False, progress=False)
    assert opt.t == 4
    net.fit(X, Y, epochs=1, batch_size=4, optimizer=opt, shuffle=False, progress=False)
    assert opt.t == 8
    other, _, _ = _problem("numpy")
    other.fit(X, Y, epochs=1, batch_size=4, optimizer=opt, shuffle=False, progress=False)
    assert opt.t == 4  # a new network starts a fresh state


def test_inverse_scaling_schedule():
    sched = fx.InvScaling(0.8, power_t=0.5)
    assert [sched(t) for t in range(4)] == pytest.approx([0.8 / math.sqrt(t + 1) for t in range(4)], rel=1e-15)


def test_reduce_on_plateau_divides_the_rate_and_stops_below_its_floor():
    sched = fx.ReduceOnPlateau(1.0, factor=0.5, patience=1, threshold=0.0, min_lr=0.3)
    stops = [sched.end_epoch(v) for v in (1.0, 0.5, 0.6, 0.7)]  # two epochs without improvement
    assert stops == [False, False, False, False] and sched(0) == 0.5
    assert [sched.end_epoch(v) for v in (0.6, 0.6)] == [False, True]  # 0.25 would fall below 0.3: stop
    assert repr(sched) == "ReduceOnPlateau(lr=1.0, factor=0.5, patience=1, threshold=0.0, min_lr=0.3)"


def test_reduce_on_plateau_stops_fit_when_its_rate_would_fall_below_its_floor():
    net, X, Y = _problem("numpy")
    sched = fx.ReduceOnPlateau(1e-9, factor=0.5, patience=0, threshold=1.0, min_lr=1e-10)
    hist = net.fit(X, Y, epochs=50, batch_size=16, optimizer=fx.SGD(sched), progress=False)
    assert hist.stopped_early and hist.epochs < 50


def test_identical_jax_networks_share_their_compiled_epoch():
    pytest.importorskip("jax")
    from flatnet_xp.engines import compiled

    _, X, Y = _problem("numpy")
    kw = dict(epochs=2, batch_size=4, optimizer=fx.SGD(0.1), progress=False)
    _problem("jax")[0].fit(X, Y, **kw)
    programs = len(compiled._EPOCHS)
    _problem("jax")[0].fit(X, Y, **kw)  # a second network, the same configuration
    sched = fx.ReduceOnPlateau(0.1, patience=0)
    _problem("jax")[0].fit(X, Y, **(kw | {"epochs": 4, "optimizer": fx.SGD(sched)}))  # its state changes per epoch
    assert len(compiled._EPOCHS) == programs + 1


def test_data_parallel_training_on_jax_is_a_clear_error():
    pytest.importorskip("jax")
    net, X, Y = _problem("jax")
    with pytest.raises(ValueError, match="comm: data-parallel training is not supported on the JAX backend"):
        net.fit(X, Y, comm=object(), progress=False)


def test_warmup_over_a_function_is_described_without_a_memory_address():
    from flatnet_xp.schedules import describe_schedule

    def rate(t):
        return 0.05

    text = describe_schedule(fx.Warmup(rate, 2))
    assert "0x" not in text and text.endswith("rate, warmup_steps=2)")
