"""Inputs that once broke flatnet_xp, found by adversarial testing: one test per bug, kept as
regression tests now that each is fixed.

Each test states the guarantee it checks (README "Guarantees", docs/guarantees.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.persistence import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
HAS_JAX = importlib.util.find_spec("jax") is not None
MPIEXEC = shutil.which("mpiexec")
HAS_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
needs_mpi = pytest.mark.skipif(not HAS_MPI, reason="mpi4py and mpiexec are needed")


def _regression(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def _params(net: fx.FlatMLP) -> np.ndarray:
    return np.concatenate(net.get_params())


def _run_cli(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "flatnet_xp", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


# ------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_with_infinite_validation_loss_is_readable(tmp_path):
    X, Y = _regression(32)
    Xv, Yv = np.full((4, 3), 1e30), np.zeros((4, 2))  # finite in float32; the validation loss overflows to inf
    net = fx.FlatMLP([3, 4, 2], ["relu", "identity"], seed=0)
    hist = net.fit(X, Y, epochs=2, validation_data=(Xv, Yv), checkpoint=tmp_path / "c.ckpt", progress=False)
    assert np.isinf(hist.val_loss[-1])
    fx.FlatMLP.load(tmp_path / "c.ckpt")  # ModelFileError: metadata holds NaN or infinity


def test_resume_with_reduce_on_plateau_is_bit_identical(tmp_path):
    X, Y = _regression(64)

    def opt():
        return fx.SGD(lr=fx.ReduceOnPlateau(0.5, factor=0.5, patience=0, threshold=10.0))

    ref = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    ref.fit(X, Y, epochs=6, optimizer=opt(), seed=1, progress=False)
    net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    net.fit(X, Y, epochs=3, optimizer=opt(), seed=1, checkpoint=tmp_path / "c.ckpt", progress=False)
    net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)  # a new process would build a fresh schedule too
    net.fit(X, Y, epochs=6, optimizer=opt(), seed=1, resume=tmp_path / "c.ckpt", progress=False)
    np.testing.assert_array_equal(_params(net), _params(ref))


def test_resume_with_callable_schedule_in_a_new_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, numpy as np, flatnet_xp as fx
            def schedule(t):
                return 0.01
            rng = np.random.default_rng(0)
            X, Y = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))
            net = fx.FlatMLP([3, 4, 1], dtype="float64", seed=0)
            ck = sys.argv[1]
            if sys.argv[2] == "first":
                net.fit(X, Y, epochs=2, optimizer=fx.SGD(schedule), seed=1, checkpoint=ck, progress=False)
            else:
                net.fit(X, Y, epochs=4, optimizer=fx.SGD(schedule), seed=1, resume=ck, progress=False)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    ck = str(tmp_path / "c.ckpt")
    first = subprocess.run([sys.executable, str(script), ck, "first"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, str(script), ck, "resume"], capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-600:]  # "optimizer.lr: checkpoint '<function schedule at 0x..>'"


def test_resume_with_different_early_stopping_is_refused(tmp_path):
    X, Y = _regression(48)
    kw = dict(batch_size=8, seed=1, validation_data=(X, Y), progress=False, optimizer=fx.Adam(0.01))
    net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    net.fit(X, Y, epochs=2, patience=3, checkpoint=tmp_path / "c.ckpt", **kw)
    net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="patience"):
        net.fit(X, Y, epochs=5, patience=None, resume=tmp_path / "c.ckpt", **kw)


# ------------------------------------------------------------------------------------ files
def test_corrupted_metadata_is_detected(tmp_path):
    net = fx.FlatMLP([3, 4, 2], seed=0)
    net.loss_ = "cross_entropy"
    net.save(tmp_path / "m.st")
    blob = bytearray((tmp_path / "m.st").read_bytes())
    (n,) = struct.unpack("<Q", blob[:8])
    at = 8 + bytes(blob[8 : 8 + n]).index(b'loss\\"')
    blob[at] ^= 1  # one flipped bit: the key "loss" becomes "moss"
    (tmp_path / "bad.st").write_bytes(bytes(blob))
    with pytest.raises(fx.ModelFileError):
        loaded = fx.FlatMLP.load(tmp_path / "bad.st")
        raise AssertionError(f"loaded silently with loss {loaded.loss_!r} instead of 'cross_entropy'")


def _corrupt_one_digit(path: Path, key: bytes) -> Path:
    blob = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", blob[:8])
    at = 8 + bytes(blob[8 : 8 + n]).index(key) + len(key)
    while not chr(blob[at]).isdigit():
        at += 1
    blob[at] = ord("9") if blob[at] != ord("9") else ord("1")
    out = path.with_name("corrupt_" + path.name)
    out.write_bytes(bytes(blob))
    return out


def test_corrupted_checkpoint_metadata_is_detected(tmp_path):
    X, Y = _regression(32)
    net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    net.fit(X, Y, epochs=2, batch_size=8, seed=0, checkpoint=tmp_path / "c.ckpt", progress=False)
    bad = _corrupt_one_digit(tmp_path / "c.ckpt", b'\\"t\\": ')
    from flatnet_xp.persistence import read_checkpoint

    with pytest.raises(fx.ModelFileError):
        read_checkpoint(bad)


def test_save_accepts_every_name_open_accepts(tmp_path):
    name = tmp_path / ("m" * 240)
    with open(name, "wb"):  # open() accepts it
        pass
    fx.FlatMLP([3, 2], seed=0).save(name)  # OSError: File name too long


def test_checkpoint_name_near_name_max_trains_or_is_refused_before_training(tmp_path):
    X, Y = _regression(64)
    net = fx.FlatMLP([3, 4, 2], seed=0)
    before = _params(net)
    path = tmp_path / ("k" * 250)
    try:
        net.fit(X, Y, epochs=3, checkpoint=path, progress=False)
    except (ValueError, OSError):
        np.testing.assert_array_equal(_params(net), before)  # refused, and nothing trained
    else:
        assert read_checkpoint(path).epoch == 3


def test_save_to_symlink_loop_names_the_argument(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ValueError, match="path"):
        fx.FlatMLP([3, 2], seed=0).save(tmp_path / "a")


# ------------------------------------------------------------------------------------ data and memory
def test_huge_sample_weights_train_like_uniform_weights():
    X, Y = _regression(64)
    kw = dict(epochs=2, optimizer=fx.SGD(0.1), shuffle=False, progress=False)
    ref = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    ref.fit(X, Y, **kw)
    net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
    hist = net.fit(X, Y, sample_weight=np.full(64, 1e308), **kw)
    assert hist.loss[0] > 0  # was 0.0: the weights never moved
    np.testing.assert_allclose(_params(net), _params(ref), rtol=1e-12)


def test_fit_refuses_a_network_whose_training_memory_does_not_fit(monkeypatch):
    from flatnet_xp import _memory

    sizes = [2, 1_000_000, 2]
    n_params = fx.Layout(sizes).n_params
    # Enough for parameters and gradients (what FlatMLP checks), far from Adam's state and the
    # activations of a batch of 32 x 1e6 (what fit allocates); in the CLI on a real machine the same
    # shape ([2, 100000000, 2]) is killed by the kernel's OOM killer (exit 137) instead.
    monkeypatch.setattr(_memory, "available_memory", lambda: 2 * (n_params + 5) * 4 + 1_000_000)
    net = fx.FlatMLP(sizes, ["relu", "identity"], seed=0)
    X, Y = np.ones((64, 2)), np.ones((64, 2))
    with pytest.raises(ValueError, match="bytes"):
        net.fit(X, Y, epochs=1, progress=False)


# ------------------------------------------------------------------------------------ JAX
@needs_jax
def test_jax_float64_cosine_schedule_matches_numpy():
    X, Y = _regression(37)
    out = []
    for backend in ("numpy", "jax"):
        net = fx.FlatMLP([3, 6, 2], ["tanh", "identity"], backend=backend, dtype="float64", seed=0)
        net.fit(X, Y, epochs=5, batch_size=5, seed=1, optimizer=fx.Adam(fx.Cosine(0.01, 20, 1e-4)), progress=False)
        out.append(_params(net))
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=1e-10)  # was 2.7e-9


@needs_jax
@pytest.mark.parametrize("base", ["callable", "plateau"])
def test_jax_warmup_over_a_host_schedule(base):
    X, Y = _regression(32)
    sched = fx.Warmup((lambda t: 0.01) if base == "callable" else fx.ReduceOnPlateau(0.01), 5)
    net = fx.FlatMLP([3, 4, 2], backend="jax", dtype="float64", seed=0)
    net.fit(X, Y, epochs=2, optimizer=fx.SGD(sched), progress=False)  # AttributeError / TypeError unhashable


@needs_jax
def test_jax_new_network_same_configuration_reuses_the_compiled_epoch():
    from flatnet_xp.engines import compiled

    X, Y = _regression(32)

    def fit_new() -> None:
        fx.FlatMLP([3, 5, 2], backend="jax", seed=0).fit(X, Y, epochs=1, seed=0, progress=False)

    fit_new()
    before = len(compiled._EPOCHS)
    fit_new()
    assert len(compiled._EPOCHS) == before  # was one more program (and ~0.5 s of compilation) per network


@needs_jax
def test_jax_host_schedule_does_not_recompile_every_fit():
    from flatnet_xp.engines import compiled

    X, Y = _regression(32)
    net = fx.FlatMLP([3, 5, 2], backend="jax", seed=0)
    sched = fx.ReduceOnPlateau(0.01, patience=0, threshold=10.0)  # its repr changes as it reduces the rate
    net.fit(X, Y, epochs=2, optimizer=fx.SGD(sched), seed=0, progress=False)
    before = len(compiled._EPOCHS)
    net.fit(X, Y, epochs=2, optimizer=fx.SGD(sched), seed=0, progress=False)
    assert len(compiled._EPOCHS) == before


@needs_jax
def test_jax_float32_evaluate_with_labels_emits_no_warnings():
    import warnings

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 3)), rng.integers(0, 2, 16)
    net = fx.FlatMLP([3, 4, 2], ["relu", "identity"], backend="jax", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.evaluate(X, y, loss="cross_entropy")
        net.score(X, y, loss="cross_entropy")


# ------------------------------------------------------------------------------------ command line
def _csv(path: Path, labels: list[str]) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(labels), 2))
    path.write_text("x,y,label\n" + "".join(f"{a:.4f},{b:.4f},{lab}\n" for (a, b), lab in zip(X, labels, strict=True)))
    return path


def test_cli_train_with_poisson_loss(tmp_path):
    data = _csv(tmp_path / "d.csv", [str(i % 4) for i in range(40)])
    proc = _run_cli("train", "--data", str(data), "--loss", "poisson", "--target", "label", "--epochs", "2",
                    "--out", str(tmp_path / "m.st"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode in (0, 2), proc.stderr
    assert "unexpected" not in proc.stderr


def test_cli_train_into_a_closed_pipe_does_not_report_success_without_a_model(tmp_path):
    data = _csv(tmp_path / "d.csv", [str(i % 2) for i in range(40)])
    out = tmp_path / "m.st"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flatnet_xp", "train", "--data", str(data), "--epochs", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    rc = proc.wait(timeout=120)
    assert rc != 0 or out.exists(), "exit status 0 but no model was written"


def test_cli_large_integer_labels_stay_distinct(tmp_path):
    labels = [str([9007199254740993, 9007199254740992, 5][i % 3]) for i in range(60)]
    data = _csv(tmp_path / "d.csv", labels)
    proc = _run_cli("train", "--data", str(data), "--epochs", "2", "--out", str(tmp_path / "m.st"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "3 classes" in proc.stdout, proc.stdout  # was "2 classes '5', '9007199254740992'"


def test_cli_layers_with_an_empty_width_is_refused(tmp_path):
    data = _csv(tmp_path / "d.csv", [str(i % 2) for i in range(40)])
    proc = _run_cli("train", "--data", str(data), "--layers", "2,,2", "--epochs", "1",
                    "--out", str(tmp_path / "m.st"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "--layers" in proc.stderr, (proc.returncode, proc.stderr)


# ------------------------------------------------------------------------------------ MPI
MPI_WORKER = """
import json, sys, numpy as np, flatnet_xp as fx
from mpi4py import MPI
comm = MPI.COMM_WORLD; r = comm.rank; case = sys.argv[1]; out = sys.argv[2]
rng = np.random.default_rng(r)
X, Y = rng.normal(size=(64, 3)), rng.normal(size=(64, 2))
net = fx.FlatMLP([3, 4, 2], dtype="float64", seed=0)
kw = dict(epochs=3, batch_size=8, progress=False, comm=comm, seed=0)
if case == "epochs": kw["epochs"] = 3 + 2 * r
if case == "batch_size": kw["batch_size"] = 8 * (1 + r)
if case == "validation" and r == 1: kw["validation_data"] = (X, Y)
if case == "checkpoint" and r == 0: kw["checkpoint"] = out + "/run.ckpt"
if case == "optimizer": kw["optimizer"] = fx.SGD(0.1 * (1 + r))
if case == "lr_function": kw["optimizer"] = fx.SGD(lambda t: 0.1 * (1 + r))
if case == "warmup_function": kw["optimizer"] = fx.SGD(fx.Warmup(lambda t: 0.1, 2))
if case == "jax" and r == 1: net = fx.FlatMLP([3, 4, 2], backend="jax", dtype="float64", seed=0)
if case == "array" and r == 1:
    class Broken:
        shape = (64, 3)
        def __array__(self, dtype=None, copy=None): raise RuntimeError("cannot read this array")
    X = Broken()
if case == "resume":
    net.fit(X, Y, **kw, checkpoint=out + "/r.ckpt"); comm.Barrier()
    kw.update(epochs=5, checkpoint=out + "/r.ckpt", resume=out + ("/r.ckpt" if r == 0 else "/missing.ckpt"))
try:
    net.fit(X, Y, **kw)
    res = {"ok": True, "params": np.concatenate(net.get_params()).tolist()}
except Exception as exc:
    res = {"ok": False, "error": type(exc).__name__ + ": " + str(exc)}
open(f"{out}/rank{r}.json", "w").write(json.dumps(res))
"""


def _mpi(case: str, tmp_path: Path) -> list[dict]:
    worker = tmp_path / "worker.py"
    worker.write_text(MPI_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(worker), case, str(tmp_path)],
                       capture_output=True, text=True, timeout=45, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: mpiexec -n 2 hung (killed after 45 s)")
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("case", ["epochs", "batch_size", "validation", "checkpoint"])
def test_mpi_mismatched_arguments_raise_on_every_rank_instead_of_hanging(case, tmp_path):
    ranks = _mpi(case, tmp_path)
    assert not any(r["ok"] for r in ranks) and all(case.split("_")[0] in r["error"] for r in ranks), ranks


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("case", ["jax", "array", "resume", "lr_function"])
def test_mpi_a_failure_on_one_rank_raises_on_every_rank_instead_of_hanging(case, tmp_path):
    ranks = _mpi(case, tmp_path)
    assert not any(r["ok"] for r in ranks), ranks


@pytest.mark.mpi
@needs_mpi
def test_mpi_the_same_warmup_over_a_function_on_every_rank_trains(tmp_path):
    ranks = _mpi("warmup_function", tmp_path)
    assert all(r["ok"] for r in ranks), ranks
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])


@pytest.mark.mpi
@needs_mpi
def test_mpi_mismatched_optimizer_is_refused(tmp_path):
    ranks = _mpi("optimizer", tmp_path)
    if all(r["ok"] for r in ranks):
        np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])  # "all ranks hold identical parameters"
    else:
        assert all("optimizer" in r["error"] for r in ranks), ranks
