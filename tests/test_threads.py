"""One network, many threads: inference is exact from any number of threads and never disturbs fit."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy

N_THREADS, CALLS = 4, 25


def net_and_data(backend: str, seed: int = 0):
    net = fx.FlatMLP([64, 96, 10], ["relu", "identity"], backend=backend, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    return net, rng.normal(size=(200, 64)), rng.integers(0, 10, size=200)


INFERENCE = {
    "predict": lambda net, X, y: net.predict(X),
    "forward": lambda net, X, y: net.forward(X),
    "predict_proba": lambda net, X, y: net.predict_proba(X),
    "predict_class": lambda net, X, y: net.predict_class(X),
    "evaluate": lambda net, X, y: net.evaluate(X, y, loss="cross_entropy"),
    "score": lambda net, X, y: net.score(X, y, loss="cross_entropy"),
    "loss_and_grad": lambda net, X, y: np.concatenate(
        [[net.loss_and_grad(X, y, loss="cross_entropy")[0]], to_numpy(net.loss_and_grad(X, y, "cross_entropy")[1])]
    ),
}


@pytest.mark.parametrize("method", sorted(INFERENCE))
def test_inference_from_many_threads_equals_the_single_thread_result(xp, method):
    net, X, y = net_and_data(xp)
    call = INFERENCE[method]
    inputs = [X[i * 10 :] for i in range(N_THREADS)]  # different data per thread, same batch sizes inside
    expected = [np.asarray(to_numpy(call(net, Xi, y[i * 10 :]))) for i, Xi in enumerate(inputs)]
    barrier = threading.Barrier(N_THREADS)

    def worker(i: int) -> int:
        barrier.wait()
        wrong = 0
        for _ in range(CALLS):
            got = np.asarray(to_numpy(call(net, inputs[i], y[i * 10 :])))
            wrong += not np.array_equal(got, expected[i])
        return wrong

    with ThreadPoolExecutor(N_THREADS) as pool:
        assert list(pool.map(worker, range(N_THREADS))) == [0] * N_THREADS


@pytest.mark.parametrize("backend", ["numpy", "torch", "array_api_strict"])
def test_predicting_during_fit_never_changes_what_fit_computes(backend):
    pytest.importorskip({"array_api_strict": "array_api_strict"}.get(backend, backend))
    reference, X, y = net_and_data(backend)
    kw = dict(epochs=6, batch_size=20, loss="cross_entropy", optimizer=fx.Adam(0.01), seed=1, progress=False)
    reference.fit(X, y, **kw)
    net, _, _ = net_and_data(backend)
    stop = threading.Event()
    predictions = []

    def predict_loop() -> None:
        while not stop.is_set():  # batch 20 = the fit's batch size: the buffers fit would share
            predictions.append(to_numpy(net.predict(X[:20])))

    thread = threading.Thread(target=predict_loop)
    thread.start()
    try:
        net.fit(X, y, **kw)
    finally:
        stop.set()
        thread.join()
    assert predictions
    np.testing.assert_array_equal(to_numpy(net.params), to_numpy(reference.params))


def test_a_second_concurrent_fit_on_one_network_is_a_clear_runtime_error():
    net, X, y = net_and_data("numpy")
    started, release = threading.Event(), threading.Event()

    def hold(n, history):
        started.set()
        release.wait(timeout=10)

    first = threading.Thread(
        target=lambda: net.fit(X, y, epochs=1, loss="cross_entropy", callbacks=hold, progress=False)
    )
    first.start()
    assert started.wait(timeout=10)
    before = net.params.copy()
    try:
        with pytest.raises(RuntimeError, match="another fit is already running on this network"):
            net.fit(X, y, epochs=3, loss="cross_entropy", progress=False)
        np.testing.assert_array_equal(net.params, before)
    finally:
        release.set()
        first.join()
    net.fit(X, y, epochs=1, loss="cross_entropy", progress=False)  # free again once the first one ends


def test_independent_networks_train_in_parallel_threads():
    nets = [net_and_data("numpy", seed=s)[0] for s in range(3)]
    _, X, y = net_and_data("numpy")
    kw = dict(epochs=3, batch_size=16, loss="cross_entropy", optimizer=fx.SGD(0.05), seed=0, progress=False)
    expected = []
    for s in range(3):
        ref = net_and_data("numpy", seed=s)[0]
        ref.fit(X, y, **kw)
        expected.append(ref.params)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: n.fit(X, y, **kw), nets))
    for net, params in zip(nets, expected, strict=True):
        np.testing.assert_array_equal(net.params, params)
