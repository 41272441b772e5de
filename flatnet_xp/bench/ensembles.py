"""E networks trained together (FlatEnsemble) against the ways one would otherwise do it.

``flatnet-xp bench --ensembles`` and ``python benchmarks/ensemble.py`` print, for two configurations,
the median seconds of one epoch (SGD, shuffled with one seed, the same batches for every member):

* ``ensemble``: ``FlatEnsemble.fit`` on NumPy (one call for all E members);
* ``loop``: a Python loop of E ``FlatMLP.fit`` calls on NumPy (the same numbers, member by member);
* ``ensemble_jax``: ``FlatEnsemble.fit`` on JAX (one compiled program per epoch);
* ``vmap_jax``: hand-written ``jax.vmap`` of ``jax.value_and_grad`` inside one jitted ``lax.scan``
  over the epoch's batches (the JAX idiom, autodiff instead of our backprop);
* ``torch_func``: ``torch.func.vmap`` of ``torch.func.grad`` over stacked parameters, one Python
  step per batch.

Configurations: E=64 seed networks [50, 5] sigmoid, batch 1, float64, 2,000 samples; E=32
networks [20, 64, 64, 1] relu, batch 32, float32, 4,000 samples. JAX timings exclude compilation
(one warm-up epoch each). Ratios are computed within one run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import flatnet_xp as fx
from flatnet_xp._random import epoch_order

CONFIGS: dict[str, dict[str, Any]] = {
    "seed [50,5] E=64 b=1 f64": {"sizes": [50, 5], "acts": ["sigmoid"], "E": 64, "batch": 1, "dtype": "float64",
                                 "n": 2000, "lr": 0.1},
    "[20,64,64,1] E=32 b=32 f32": {"sizes": [20, 64, 64, 1], "acts": ["relu", "relu", "identity"], "E": 32,
                                   "batch": 32, "dtype": "float32", "n": 4000, "lr": 0.01},
}  # fmt: skip


def _median(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _data(cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(cfg["n"], cfg["sizes"][0])).astype(cfg["dtype"])
    Y = rng.uniform(size=(cfg["n"], cfg["sizes"][-1])).astype(cfg["dtype"])
    return X, Y


def run_ensemble_benchmarks(
    repeats: int = 3, skip: tuple[str, ...] = (), quick: bool = False
) -> dict[str, dict[str, float]]:
    """Median seconds per epoch of every way (see the module doc) and the ratios, by configuration.

    ``skip`` may hold ``"jax"`` and ``"torch"`` (or they are skipped when not installed); ``quick``
    uses a quarter of the samples.
    """
    import importlib.util

    results = {}
    for name, base in CONFIGS.items():
        cfg = dict(base, n=base["n"] // 4) if quick else base
        row = bench_numpy(cfg, repeats)
        if "jax" not in skip and importlib.util.find_spec("jax") is not None:
            row |= bench_jax(cfg, repeats)
        if "torch" not in skip and importlib.util.find_spec("torch") is not None:
            row |= bench_torch(cfg, repeats)
        row["loop / ensemble"] = row["loop"] / row["ensemble"]
        if "vmap_jax" in row:
            row["ensemble_jax speed vs vmap_jax"] = row["vmap_jax"] / row["ensemble_jax"]
        results[name] = row
    return results


def format_row(name: str, row: dict[str, float]) -> str:
    """One line of results."""
    return f"{name:<28} " + "  ".join(f"{k}: {v:.4g}" for k, v in row.items())


def bench_numpy(cfg: dict[str, Any], repeats: int) -> dict[str, float]:
    X, Y = _data(cfg)
    e, sizes, acts, dt = cfg["E"], cfg["sizes"], cfg["acts"], cfg["dtype"]
    kw = {"epochs": 1, "batch_size": cfg["batch"], "seed": 0}
    ens = fx.FlatEnsemble(sizes, e, acts, dtype=dt, seed=list(range(e)))
    nets = [fx.FlatMLP(sizes, acts, dtype=dt, seed=i) for i in range(e)]
    out = {"ensemble": _median(lambda: ens.fit(X, Y, optimizer=fx.SGD(lr=cfg["lr"]), **kw), repeats)}

    def loop() -> None:
        for net in nets:
            net.fit(X, Y, optimizer=fx.SGD(lr=cfg["lr"]), **kw)

    out["loop"] = _median(loop, repeats)
    return out


def bench_jax(cfg: dict[str, Any], repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    X, Y = _data(cfg)
    e, sizes, acts, dt, b, lr = cfg["E"], cfg["sizes"], cfg["acts"], cfg["dtype"], cfg["batch"], cfg["lr"]
    kw = {"epochs": 1, "batch_size": b, "seed": 0}
    ens = fx.FlatEnsemble(sizes, e, acts, dtype=dt, seed=list(range(e)), backend="jax")
    opt = fx.SGD(lr=lr)
    ens.fit(X, Y, optimizer=opt, **kw)  # compile
    out = {"ensemble_jax": _median(lambda: ens.fit(X, Y, optimizer=opt, **kw), repeats)}

    n = cfg["n"]
    steps = n // b
    lay = fx.Layout(sizes)
    fns = [jax.nn.sigmoid if a == "sigmoid" else jax.nn.relu if a == "relu" else (lambda z: z) for a in acts]

    def forward(p: Any, x: Any) -> Any:
        a = x
        for k, f in enumerate(fns):
            W = p[lay.w_slice(k)].reshape(lay.shapes[k])
            bias = p[lay.w_len + lay.b_offsets[k] : lay.w_len + lay.b_offsets[k + 1]]
            a = f(a @ W.T + bias)
        return a

    def loss(p: Any, x: Any, y: Any) -> Any:
        r = forward(p, x) - y
        return jnp.mean(r * r)

    vg = jax.vmap(jax.value_and_grad(loss), in_axes=(0, None, None))

    with jax.enable_x64(dt == "float64"):

        @jax.jit
        def epoch(P: Any, Xd: Any, Yd: Any, idx: Any) -> Any:
            def body(P: Any, rows: Any) -> Any:
                v, g = vg(P, Xd[rows], Yd[rows])
                return P - lr * g, v

            return jax.lax.scan(body, P, idx)

        P = jnp.asarray(np.asarray(fx.to_numpy(ens.params)))
        Xd, Yd = jnp.asarray(X), jnp.asarray(Y)
        idx = jnp.asarray(epoch_order(0, 0, 0, n)[: steps * b].reshape(steps, b).astype(np.int32))
        jax.block_until_ready(epoch(P, Xd, Yd, idx))

        def run() -> None:
            jax.block_until_ready(epoch(P, Xd, Yd, idx))

        out["vmap_jax"] = _median(run, repeats)
    return out


def bench_torch(cfg: dict[str, Any], repeats: int) -> dict[str, float]:
    import torch
    from torch.func import grad_and_value, vmap

    X, Y = _data(cfg)
    e, sizes, acts, b, lr = cfg["E"], cfg["sizes"], cfg["acts"], cfg["batch"], cfg["lr"]
    lay = fx.Layout(sizes)
    fns = [torch.sigmoid if a == "sigmoid" else torch.relu if a == "relu" else (lambda z: z) for a in acts]
    P = torch.as_tensor(np.asarray(fx.FlatEnsemble(sizes, e, acts, dtype=cfg["dtype"], seed=0).params))
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)

    def loss(p: Any, x: Any, y: Any) -> Any:
        a = x
        for k, f in enumerate(fns):
            W = p[lay.w_slice(k)].reshape(lay.shapes[k])
            bias = p[lay.w_len + lay.b_offsets[k] : lay.w_len + lay.b_offsets[k + 1]]
            a = f(a @ W.T + bias)
        r = a - y
        return (r * r).mean()

    gv = vmap(grad_and_value(loss), in_dims=(0, None, None))
    order = torch.as_tensor(epoch_order(0, 0, 0, cfg["n"]))

    def run() -> None:
        nonlocal P
        for lo in range(0, cfg["n"], b):
            rows = order[lo : lo + b]
            g, _ = gv(P, Xt[rows], Yt[rows])
            P = P - lr * g

    return {"torch_func": _median(run, repeats)}
