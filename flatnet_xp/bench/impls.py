"""The implementations a benchmark compares, each prepared once and then timed as ``run(steps)``.

Every implementation trains the same network (sizes, activations, loss, dtype, batch) with plain
SGD on the same random data for ``steps`` optimizer steps; ``run`` returns only when the work is
done (device synchronised on GPUs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp.bench.configs import Config

__all__ = ["IMPLS", "Runner", "gemm_peak", "make_data"]

LR = 1e-3


@dataclass
class Runner:
    """A prepared implementation: ``run(steps)`` trains ``steps`` steps; ``peak_mem()`` in bytes or None."""

    impl: str
    backend: str | None
    run: Callable[[int], None]
    peak_mem: Callable[[int], float | None]
    note: str = ""


def make_data(cfg: Config, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``steps * batch`` random samples: N(0, 1) features; class labels or N(0, 1) targets."""
    rng = np.random.default_rng(seed)
    n = steps * cfg.batch
    X = rng.standard_normal((n, cfg.sizes[0])).astype(cfg.dtype)
    if cfg.loss == "cross_entropy":
        Y = rng.integers(0, cfg.sizes[-1], size=n)
    elif cfg.loss == "mse" and cfg.out_act == "sigmoid":
        Y = rng.random((n, cfg.sizes[-1])).astype(cfg.dtype)
    else:
        Y = rng.standard_normal((n, cfg.sizes[-1])).astype(cfg.dtype)
    return X, Y


def _tracemalloc_peak(fn: Callable[[int], None], steps: int) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        fn(steps)
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def _epochs_of(cfg: Config, k: int) -> tuple[int, int]:
    """``(batches per epoch, epochs)`` for ``k`` steps: a whole epoch of the seed's 1000 samples;
    elsewhere 10 batches a fit call repeated over epochs, as training usually runs (fit's one-off
    input checks are then paid once per call, not once per 10 steps)."""
    if cfg.batch == 1 or k % 10:
        return k, 1
    return 10, k // 10


def flatnet_runner(cfg: Config, steps: int, backend: str, device: Any = None) -> Runner:
    import flatnet_xp as fx

    net = fx.FlatMLP(cfg.sizes, cfg.activations, backend=backend, dtype=cfg.dtype, seed=0, device=device)
    Xh, Yh = make_data(cfg, steps)
    be = net._be
    X = be.asarray(Xh, dtype=net.dtype)
    Y = be.asarray(Yh) if cfg.loss == "cross_entropy" else be.asarray(Yh, dtype=net.dtype)
    opt = fx.SGD(lr=LR)

    def run(k: int) -> None:
        nb, epochs = _epochs_of(cfg, k)
        n = nb * cfg.batch
        net.fit(
            X[:n, ...],
            Y[:n, ...] if Y.ndim == 2 else Y[:n],
            epochs=epochs,
            batch_size=cfg.batch,
            optimizer=opt,
            loss=cfg.loss,
            shuffle=False,
            progress=False,
        )

    def peak(k: int) -> float | None:
        if be.is_gpu:
            return _gpu_peak(backend, run, k)
        if backend == "torch":
            return None
        return _tracemalloc_peak(run, k)

    return Runner("flatnet_xp", backend, run, peak)


def _gpu_peak(backend: str, run: Callable[[int], None], k: int) -> float | None:
    if backend == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        run(k)
        return float(pool.total_bytes())
    import torch

    torch.cuda.reset_peak_memory_stats()
    run(k)
    return float(torch.cuda.max_memory_allocated())


def torch_runner(cfg: Config, steps: int, device: str = "cpu") -> Runner:
    import torch

    dtype = getattr(torch, cfg.dtype)
    acts = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "leaky_relu": torch.nn.LeakyReLU}
    layers: list[Any] = []
    for (n_in, n_out), act in zip(zip(cfg.sizes[:-1], cfg.sizes[1:], strict=True), cfg.activations, strict=True):
        layers.append(torch.nn.Linear(n_in, n_out, dtype=dtype, device=device))
        if act != "identity":
            layers.append(acts[act]())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss() if cfg.loss == "cross_entropy" else torch.nn.MSELoss()
    Xh, Yh = make_data(cfg, steps)
    X = torch.as_tensor(Xh, device=device)
    Y = torch.as_tensor(Yh, device=device)
    cuda = device != "cpu"
    B = cfg.batch

    def run(k: int) -> None:
        nb = _epochs_of(cfg, k)[0]  # the same batches, in the same order, as flatnet_xp's run
        for i in range(k):
            j = i % nb
            xb, yb = X[j * B : (j + 1) * B], Y[j * B : (j + 1) * B]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()

    def peak(k: int) -> float | None:
        return _gpu_peak("torch", run, k) if cuda else None

    return Runner("torch", "torch-cuda" if cuda else "torch-cpu", run, peak)


def sklearn_runner(cfg: Config, steps: int) -> Runner:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    act = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh", "identity": "identity"}[cfg.hidden]
    common = dict(
        hidden_layer_sizes=cfg.sizes[1:-1],
        activation=act,
        solver="sgd",
        batch_size=cfg.batch,
        learning_rate_init=LR,
        momentum=0.0,
        alpha=0.0,
        shuffle=False,
        random_state=0,
    )
    X, Y = make_data(cfg, steps)
    if cfg.loss == "cross_entropy":
        est: Any = MLPClassifier(**common)
        classes = np.arange(cfg.sizes[-1])
        est.partial_fit(X[: cfg.batch], Y[: cfg.batch], classes=classes)
    else:
        est = MLPRegressor(**common)
        est.partial_fit(X[: cfg.batch], Y[: cfg.batch])
    note = "MLPRegressor has a linear output layer" if cfg.out_act != "identity" else ""

    def run(k: int) -> None:
        nb, epochs = _epochs_of(cfg, k)
        for _ in range(epochs):  # each partial_fit call is one epoch of nb SGD steps
            est.partial_fit(X[: nb * cfg.batch], Y[: nb * cfg.batch])

    return Runner("sklearn", "numpy", run, lambda k: _tracemalloc_peak(run, k), note)


def seed_loops_runner(cfg: Config, steps: int) -> Runner:
    from flatnet_xp.seed import seed_data, seed_loops

    data = seed_data()

    def run(k: int) -> None:
        seed_loops(data, epochs=1, n_samples=min(k, data.x.shape[0]))

    return Runner("seed_loops", "numpy", run, lambda k: _tracemalloc_peak(run, k), "the seed's per-element loops")


def gemm_peak(dtype: str, backend: str = "numpy", repeats: int = 3) -> float:
    """Best GFLOP/s of square ``A @ B`` (2 n^3 flops) over a few sizes, median of ``repeats`` each."""
    if backend == "numpy":
        sizes = (1024, 2048)
        xp: Any = np

        def sync() -> None:
            return None
    else:
        import cupy

        sizes = (4096, 8192)
        xp = cupy

        def sync() -> None:
            cupy.cuda.Device().synchronize()

    best = 0.0
    for n in sizes:
        a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(dtype))
        b = xp.asarray(np.random.default_rng(1).standard_normal((n, n)).astype(dtype))
        c = xp.empty_like(a)
        xp.matmul(a, b, out=c)
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            xp.matmul(a, b, out=c)
            sync()
            times.append(time.perf_counter() - t0)
        best = max(best, 2.0 * n**3 / float(np.median(times)) / 1e9)
    return best


IMPLS = ("flatnet_xp", "torch", "sklearn", "seed_loops")
