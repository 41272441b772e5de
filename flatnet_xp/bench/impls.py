"""The implementations a benchmark compares, each prepared once and then timed as ``run(steps)``.

Every implementation trains the same network (sizes, activations, loss, dtype, batch) with plain
SGD on the same random data for ``steps`` optimizer steps; ``run`` returns only when the work is
done (device synchronised on GPUs, JAX arrays ready).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from flatnet_xp.bench.configs import Config

__all__ = [
    "IMPLS",
    "Runner",
    "epoch_plan",
    "flatnet_runner",
    "glorot_params",
    "jax_epoch_fn",
    "jax_loss_fn",
    "jax_runner",
    "jax_scope",
    "make_data",
    "seed_loops_runner",
    "sklearn_runner",
    "torch_runner",
]

LR = 1e-3

#: JAX on CPU runs XLA's own thread pool: the benchmark's thread limit does not reach it.
JAX_CPU_NOTE = "XLA's CPU thread pool (all cores, not limited by --threads)"


def _no_losses() -> np.ndarray | None:
    return None


@dataclass
class Runner:
    """A prepared implementation.

    Attributes
    ----------
    impl, backend : str
        The implementation (``flatnet_xp``, ``torch``, ``jax``, ...) and what it ran on.
    run : callable
        ``run(steps)`` trains ``steps`` optimizer steps and returns when the work is done.
    peak_mem : callable
        ``peak_mem(steps)``: peak bytes allocated while training ``steps`` steps, or None.
    note : str
    jit : bool
        The first ``run`` call compiles (JAX): the runner reports its compile time separately.
    last_losses : callable
        The per-step losses of the last ``run`` as NumPy, where the implementation keeps them (JAX).
    """

    impl: str
    backend: str | None
    run: Callable[[int], None]
    peak_mem: Callable[[int], float | None]
    note: str = ""
    jit: bool = False
    last_losses: Callable[[], np.ndarray | None] = field(default=_no_losses, repr=False)


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


def epoch_plan(cfg: Config, k: int) -> tuple[int, int]:
    """``(batches per epoch, epochs)`` for ``k`` steps: a whole epoch of the seed's 1000 samples;
    elsewhere 10 batches a fit call repeated over epochs, as training usually runs (fit's one-off
    input checks are then paid once per call, not once per 10 steps)."""
    if cfg.batch == 1 or k % 10:
        return k, 1
    return 10, k // 10


def jax_scope(dtype: str) -> contextlib.AbstractContextManager[Any]:
    """``jax.enable_x64(True)`` for float64, a no-op otherwise.

    Scoped: float64 arrays exist inside the block only, and the user's global JAX configuration
    (``jax_enable_x64``) is left as it was. Both building and running a float64 JAX network go
    through it (a jitted function traced under it is retraced without it).
    """
    if dtype != "float64":
        return contextlib.nullcontext()
    import jax

    return jax.enable_x64(True)


def flatnet_runner(cfg: Config, steps: int, backend: str, device: Any = None) -> Runner:
    """flatnet_xp through the public ``FlatMLP.fit`` on ``backend``.

    Data are moved onto the backend once and sliced once per size (views on NumPy, copies on an
    immutable backend such as JAX); nothing is written into them. A JAX network is built and
    trained inside :func:`jax_scope`, and its first ``fit`` call (which compiles) is reported apart.
    """
    import flatnet_xp as fx

    scope = partial(jax_scope, cfg.dtype) if backend == "jax" else contextlib.nullcontext
    with scope():
        net = fx.FlatMLP(cfg.sizes, cfg.activations, backend=backend, dtype=cfg.dtype, seed=0, device=device)
        Xh, Yh = make_data(cfg, steps)
        be = net.flat_params.backend
        X = be.asarray(Xh, dtype=net.dtype)
        Y = be.asarray(Yh) if cfg.loss == "cross_entropy" else be.asarray(Yh, dtype=net.dtype)
    opt = fx.SGD(lr=LR)
    sliced: dict[int, tuple[Any, Any]] = {}

    def data(n: int) -> tuple[Any, Any]:
        if n not in sliced:
            with scope():
                sliced[n] = (X[:n, ...], Y[:n, ...] if Y.ndim == 2 else Y[:n])
        return sliced[n]

    def run(k: int) -> None:
        nb, epochs = epoch_plan(cfg, k)
        with scope():
            net.fit(
                *data(nb * cfg.batch),
                epochs=epochs,
                batch_size=cfg.batch,
                optimizer=opt,
                loss=cfg.loss,
                shuffle=False,
                progress=False,
            )
            if backend == "jax":
                import jax

                jax.block_until_ready(net.params)

    def peak(k: int) -> float | None:
        if be.is_gpu:
            return _gpu_peak(backend, run, k)
        if backend in ("torch", "jax"):
            return None
        return _tracemalloc_peak(run, k)

    jit = backend == "jax"
    return Runner("flatnet_xp", backend, run, peak, JAX_CPU_NOTE if jit and not be.is_gpu else "", jit=jit)


def _gpu_peak(lib: str, run: Callable[[int], None], k: int) -> float | None:
    """Peak device memory of ``run(k)``: CuPy's pool, torch's allocator, or JAX's device statistics."""
    if lib == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        run(k)
        return float(pool.total_bytes())
    if lib == "jax":
        import jax

        run(k)
        stats = jax.devices("gpu")[0].memory_stats() or {}  # a process-wide peak: JAX cannot reset it
        return float(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None
    import torch

    torch.cuda.reset_peak_memory_stats()
    run(k)
    return float(torch.cuda.max_memory_allocated())


def torch_runner(cfg: Config, steps: int, device: str = "cpu") -> Runner:
    import torch

    dtype = getattr(torch, cfg.dtype)
    acts = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "leaky_relu": torch.nn.LeakyReLU}
    layers: list[Any] = []
    for n_in, n_out, act in cfg.layers:
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
        nb = epoch_plan(cfg, k)[0]  # the same batches, in the same order, as flatnet_xp's run
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


def glorot_params(cfg: Config, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """flatnet_xp's initial weights for ``cfg`` (``FlatMLP(seed=seed)``) as ``(W, b)`` per layer,
    ``W`` of shape ``(fan_in, fan_out)`` so that a layer is ``x @ W + b``."""
    import flatnet_xp as fx

    net = fx.FlatMLP(cfg.sizes, cfg.activations, dtype=cfg.dtype, seed=seed)
    w, b = net.get_params()
    lay = net.layout
    return [(w[lay.w_slice(k)].reshape(lay.shapes[k]).T.copy(), b[lay.b_slice(k)].copy()) for k in range(lay.n_layers)]


def _jax_activation(name: str) -> Callable[[Any], Any]:
    import jax

    from flatnet_xp.activations import LEAKY_SLOPE

    table: dict[str, Callable[[Any], Any]] = {
        "relu": jax.nn.relu,
        "sigmoid": jax.nn.sigmoid,
        "tanh": jax.numpy.tanh,
        "leaky_relu": lambda x: jax.nn.leaky_relu(x, LEAKY_SLOPE),
        "identity": lambda x: x,
    }
    return table[name]


def jax_loss_fn(cfg: Config) -> Callable[[Any, Any, Any], Any]:
    """``loss(params, x, y)`` of ``cfg``'s network in plain JAX.

    ``params`` is a list of ``(W, b)`` (``W`` of shape ``(fan_in, fan_out)``); the loss is the mean
    squared error over every output, or the mean softmax cross-entropy of logits against integer
    labels ``y``, as flatnet_xp and PyTorch define them.
    """
    import jax
    import jax.numpy as jnp

    acts = [_jax_activation(a) for a in cfg.activations]

    def forward(params: Any, x: Any) -> Any:
        for (W, b), act in zip(params, acts, strict=True):
            x = act(x @ W + b)
        return x

    def mse(params: Any, x: Any, y: Any) -> Any:
        r = forward(params, x) - y
        return jnp.mean(r * r)

    def cross_entropy(params: Any, x: Any, y: Any) -> Any:
        logp = jax.nn.log_softmax(forward(params, x), axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return cross_entropy if cfg.loss == "cross_entropy" else mse


def jax_epoch_fn(cfg: Config, lr: float = LR, donate: bool = False) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """ONE jitted function ``epoch(params, xs, ys) -> (params, losses)`` for a whole epoch.

    ``xs`` and ``ys`` hold the epoch's batches stacked on a leading axis; ``jax.lax.scan`` runs one
    plain SGD step per batch (``jax.value_and_grad`` of :func:`jax_loss_fn`), so an epoch is one
    dispatch. ``losses`` are the per-step losses before each update. ``donate`` lets XLA reuse the
    parameters' buffers (not implemented on CPU, where it only warns).
    """
    import jax

    value_and_grad = jax.value_and_grad(jax_loss_fn(cfg))

    def step(params: Any, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        loss, grads = value_and_grad(params, *batch)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss

    def epoch(params: Any, xs: Any, ys: Any) -> tuple[Any, Any]:
        return jax.lax.scan(step, params, (xs, ys))

    return jax.jit(epoch, donate_argnums=(0,) if donate else ())


def jax_runner(cfg: Config, steps: int, device: str = "cpu") -> Runner:
    """A hand-written JAX peer: :func:`jax_loss_fn`, ``jax.value_and_grad`` and SGD, one
    :func:`jax_epoch_fn` call per epoch, on ``jax.devices(device)[0]`` (``"cpu"`` or ``"gpu"``).

    Initial weights are flatnet_xp's (:func:`glorot_params`); data are placed on the device once.
    float64 configurations build and run inside :func:`jax_scope`. The first ``run`` compiles.
    """
    import jax

    dev = jax.devices(device)[0]
    B = cfg.batch
    with jax_scope(cfg.dtype):
        params = jax.device_put(glorot_params(cfg), dev)
        Xh, Yh = make_data(cfg, steps)
        if cfg.loss == "cross_entropy":
            Yh = Yh.astype(np.int32)  # JAX's default integer width without x64
        xs_all = jax.device_put(Xh.reshape(steps, B, -1), dev)
        ys_all = jax.device_put(Yh.reshape(steps, B, *Yh.shape[1:]), dev)
        epoch = jax_epoch_fn(cfg, donate=dev.platform != "cpu")
    state: dict[str, Any] = {"params": params, "losses": None}
    batches: dict[int, tuple[Any, Any]] = {}

    def run(k: int) -> None:
        nb, epochs = epoch_plan(cfg, k)
        with jax_scope(cfg.dtype):
            if nb not in batches:  # the same batches, in the same order, as the other runners
                batches[nb] = (xs_all[:nb], ys_all[:nb])
            p, losses = state["params"], None
            for _ in range(epochs):
                p, losses = epoch(p, *batches[nb])
            state["params"], state["losses"] = jax.block_until_ready((p, losses))

    def last_losses() -> np.ndarray | None:
        return None if state["losses"] is None else np.asarray(state["losses"])

    def peak(k: int) -> float | None:
        return _gpu_peak("jax", run, k) if dev.platform == "gpu" else None

    backend = f"jax-{'gpu' if dev.platform == 'gpu' else dev.platform}"
    note = JAX_CPU_NOTE if dev.platform == "cpu" else ""
    return Runner("jax", backend, run, peak, note, jit=True, last_losses=last_losses)


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
        nb, epochs = epoch_plan(cfg, k)
        for _ in range(epochs):  # each partial_fit call is one epoch of nb SGD steps
            est.partial_fit(X[: nb * cfg.batch], Y[: nb * cfg.batch])

    return Runner("sklearn", "numpy", run, lambda k: _tracemalloc_peak(run, k), note)


def seed_loops_runner(cfg: Config, steps: int) -> Runner:
    from flatnet_xp.seed import seed_data, seed_loops

    data = seed_data()

    def run(k: int) -> None:
        seed_loops(data, epochs=1, n_samples=min(k, data.x.shape[0]))

    return Runner("seed_loops", "numpy", run, lambda k: _tracemalloc_peak(run, k), "the seed's per-element loops")


IMPLS = ("flatnet_xp", "torch", "jax", "sklearn", "seed_loops")
