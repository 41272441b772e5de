"""Checkpoints: written coherently with early stopping, resumed bit-identically, refused for another run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.persistence import read_file
from tests.conftest import assert_close

ROOT = Path(__file__).resolve().parents[1]


def small_net(sizes=(3, 5, 2), dtype="float64") -> fx.FlatMLP:
    return fx.FlatMLP(list(sizes), ["tanh", "identity"], dtype=dtype, seed=4)


def data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def train(net=None, X=None, Y=None, **kw):
    if X is None:
        X, Y = data()
    net = net or small_net()
    args = {"batch_size": 5, "progress": False, "optimizer": fx.SGD(lr=0.1, momentum=0.9), "seed": 3} | kw
    return net, net.fit(X, Y, **args)


def test_checkpoint_is_written_every_n_epochs_and_after_the_last(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    seen = []
    train(
        epochs=5,
        checkpoint=ckpt,
        checkpoint_every=2,
        callbacks=lambda n, h: seen.append(read_file(ckpt)[0]["epoch"] if ckpt.exists() else None),
    )
    assert seen == [None, None, 2, 2, 4]
    meta = read_file(ckpt)[0]
    assert meta["epoch"] == 5 and meta["finished"] == "completed"


def test_a_checkpoint_loads_as_a_model_with_its_loss(tmp_path):
    net, _ = train(epochs=2, checkpoint=tmp_path / "c.ckpt")
    loaded = fx.FlatMLP.load(tmp_path / "c.ckpt")
    X, Y = data()
    assert_close(loaded.forward(X), net.forward(X), rtol=0)
    assert loaded.loss_ == "mse" and loaded.evaluate(X, Y) == net.evaluate(X, Y)


def early_stopping_run(tmp_path, epochs=40):
    X, Y = data(40, seed=1)
    Xv, Yv = data(40, seed=2)
    net = fx.FlatMLP([3, 32, 2], ["relu", "identity"], dtype="float64", seed=0)
    kw = dict(epochs=epochs, batch_size=4, optimizer=fx.SGD(lr=0.05, momentum=0.9), validation_data=(Xv, Yv))
    return train(net, X, Y, patience=3, checkpoint=tmp_path / "c.ckpt", **kw), (X, Y, kw)


def test_the_last_checkpoint_holds_exactly_what_fit_returned(tmp_path):
    (net, hist), _ = early_stopping_run(tmp_path)
    assert hist.stopped_early
    meta, tensors = read_file(tmp_path / "c.ckpt")
    assert meta["finished"] == "early_stopping" and meta["history"].stopped_early
    assert meta["history"].best_epoch == hist.best_epoch
    np.testing.assert_array_equal(np.concatenate([tensors["w"], tensors["b"]]), net.params)


def test_resuming_an_early_stopped_run_returns_at_once_with_its_weights(tmp_path):
    (net, hist), (X, Y, kw) = early_stopping_run(tmp_path)
    again = fx.FlatMLP([3, 32, 2], ["relu", "identity"], dtype="float64", seed=99)
    hist2 = train(again, X, Y, patience=3, resume=tmp_path / "c.ckpt", **kw)[1]
    np.testing.assert_array_equal(again.params, net.params)
    assert hist2.loss == hist.loss and hist2.best_epoch == hist.best_epoch and hist2.stopped_early


def test_a_completed_run_resumed_with_more_epochs_continues_like_one_long_run(tmp_path):
    X, Y = data()
    Xv, Yv = data(10, seed=5)
    kw = dict(validation_data=(Xv, Yv), patience=100)
    long_net, long_hist = train(X=X, Y=Y, epochs=7, **kw)
    train(X=X, Y=Y, epochs=4, checkpoint=tmp_path / "c.ckpt", **kw)
    net = small_net()
    hist = train(net, X, Y, epochs=7, resume=tmp_path / "c.ckpt", **kw)[1]
    np.testing.assert_array_equal(net.params, long_net.params)
    assert hist.batch_loss == long_hist.batch_loss and hist.val_loss == long_hist.val_loss


def test_resuming_a_completed_run_with_the_same_epochs_returns_at_once(tmp_path):
    net, hist = train(epochs=3, checkpoint=tmp_path / "c.ckpt")
    again = small_net()
    assert train(again, epochs=3, resume=tmp_path / "c.ckpt")[1].loss == hist.loss
    np.testing.assert_array_equal(again.params, net.params)


def _resume_with(tmp_path, **changes):
    net = changes.pop("net", None) or small_net()
    X, Y = changes.pop("X", data()[0]), changes.pop("Y", data()[1])
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"^resume: .* holds a different run") as info:
        train(net, X, Y, epochs=5, resume=tmp_path / "c.ckpt", **changes)
    np.testing.assert_array_equal(net.params, before)  # refused before anything changed
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"net": small_net((3, 6, 2))}, "layer_sizes: checkpoint [3, 5, 2], this call [3, 6, 2]"),
        ({"net": small_net(dtype="float32")}, "dtype: checkpoint 'float64', this call 'float32'"),
        ({"optimizer": fx.Adam()}, "optimizer: checkpoint sgd(clip_norm=None, lr=Constant(lr=0.1)"),
        ({"optimizer": fx.SGD(lr=0.2, momentum=0.9)}, "optimizer.lr: checkpoint 'Constant(lr=0.1)'"),
        (
            {"optimizer": fx.SGD(lr=0.1, momentum=0.9, clip_norm=1.0)},
            "optimizer.clip_norm: checkpoint None, this call 1.0",
        ),
        ({"batch_size": 4}, "batch_size: checkpoint 5, this call 4"),
        ({"loss": "poisson", "Y": np.abs(data()[1])}, "loss: checkpoint mse(scale=1.0), this call poisson(scale=1.0)"),
        ({"seed": 4}, "seed: checkpoint 3, this call 4"),
        ({"shuffle": False}, "shuffle: checkpoint True, this call False"),
        ({"X": data()[0] + 1e-9, "Y": data()[1]}, "data.X: the values differ"),
        (
            {"X": data(24)[0], "Y": data(24)[1]},
            "data.X: checkpoint shape (20, 3) float64, this call shape (24, 3) float64",
        ),
        ({"validation_data": data(6)}, "validation.X: checkpoint none, this call shape (6, 3) float64"),
        ({"sample_weight": np.ones(20)}, "data.sample_weight: checkpoint none, this call shape (20,) float64"),
    ],
)
def test_resume_of_a_different_run_is_refused_naming_the_difference(tmp_path, change, expected):
    train(epochs=2, checkpoint=tmp_path / "c.ckpt")
    message = _resume_with(tmp_path, **change)
    assert expected in message
    assert "load the model (FlatMLP.load) and call fit without resume" in message


def test_resume_without_a_seed_uses_the_checkpoints_shuffle_state(tmp_path):
    straight = train(epochs=4)[0]
    train(epochs=2, checkpoint=tmp_path / "c.ckpt")
    net = small_net()
    train(net, epochs=4, seed=None, resume=tmp_path / "c.ckpt")
    np.testing.assert_array_equal(net.params, straight.params)


def test_resume_with_fewer_epochs_than_already_run_is_refused(tmp_path):
    train(epochs=3, checkpoint=tmp_path / "c.ckpt", patience=10)
    with pytest.raises(ValueError, match=r"epochs: the checkpoint .* has already run 3 epochs, got epochs=2"):
        train(small_net(), epochs=2, resume=tmp_path / "c.ckpt", patience=10)


def test_resume_from_a_model_file_is_refused(tmp_path):
    small_net().save(tmp_path / "m.safetensors")
    with pytest.raises(fx.ModelFileError, match="not a checkpoint"):
        train(epochs=3, resume=tmp_path / "m.safetensors")


def test_resume_restores_the_loss_it_was_trained_with(tmp_path):
    X, _ = data()
    labels = np.random.default_rng(0).integers(0, 2, size=20)
    train(X=X, Y=labels, epochs=2, loss="cross_entropy", checkpoint=tmp_path / "c.ckpt")
    net = small_net()
    train(net, X, labels, epochs=3, loss="cross_entropy", resume=tmp_path / "c.ckpt")
    assert net.loss_ == "cross_entropy"


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("missing/dir/c.ckpt", ValueError, "checkpoint: the folder of .* does not exist"),
        (".", ValueError, "checkpoint: '.' is a directory, not a regular file"),
        (42, TypeError, "checkpoint: expected a file path"),
        ("", ValueError, "checkpoint: expected a file path"),
    ],
)
def test_a_bad_checkpoint_path_is_refused_before_any_training(tmp_path, monkeypatch, path, error, match):
    monkeypatch.chdir(tmp_path)
    net = small_net()
    before = net.params.copy()
    with pytest.raises(error, match=match):
        train(net, epochs=1000, checkpoint=path)
    np.testing.assert_array_equal(net.params, before)


def test_a_fifo_as_checkpoint_is_refused_before_any_training(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        train(epochs=1, checkpoint=fifo)


RESUMER = textwrap.dedent(
    """
    import sys, json, numpy as np, flatnet_xp as fx
    mode, ckpt, out, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 5)); y = rng.integers(0, 3, size=96)
    Xv = rng.normal(size=(30, 5)); yv = rng.integers(0, 3, size=30)
    net = fx.FlatMLP([5, 16, 3], ["relu", "identity"], dtype="float64", seed=1)
    kw = dict(epochs=epochs, batch_size=7, loss="cross_entropy", optimizer=fx.Adam(lr=fx.Cosine(0.02, 100)),
              seed=5, validation_data=(Xv, yv), patience=50, progress=False, checkpoint=ckpt)
    if mode == "resume":
        kw["resume"] = ckpt
    hist = net.fit(X, y, **kw)
    np.save(out, net.params)
    with open(out + ".json", "w") as fh:
        json.dump(hist.to_dict(), fh)
    """
)


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-c", RESUMER, *args], check=True, cwd=ROOT, timeout=120)


@pytest.mark.slow
def test_resume_in_a_new_process_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    straight, interrupted = str(tmp_path / "straight.npy"), str(tmp_path / "resumed.npy")
    _run("fresh", str(tmp_path / "a.ckpt"), straight, "8")
    _run("fresh", str(tmp_path / "b.ckpt"), str(tmp_path / "first_half.npy"), "3")  # the "crash" after epoch 3
    _run("resume", str(tmp_path / "b.ckpt"), interrupted, "8")
    np.testing.assert_array_equal(np.load(straight), np.load(interrupted))
    h1 = json.loads(Path(straight + ".json").read_text())
    h2 = json.loads(Path(interrupted + ".json").read_text())
    for key in ("loss", "batch_loss", "val_loss", "val_accuracy", "val_score"):
        assert h1[key] == h2[key], key


def test_a_plateau_schedule_resumes_exactly(tmp_path):
    X, Y = data()
    Xv, Yv = data(10, seed=7)

    def run(epochs, **kw):
        sched = fx.ReduceOnPlateau(0.2, factor=0.5, patience=0, threshold=10.0)  # divides every epoch
        return train(X=X, Y=Y, epochs=epochs, optimizer=fx.SGD(sched), validation_data=(Xv, Yv), **kw)[0], sched

    straight, s1 = run(5)
    run(2, checkpoint=tmp_path / "c.ckpt")
    resumed, s2 = run(5, resume=tmp_path / "c.ckpt")
    np.testing.assert_array_equal(resumed.params, straight.params)
    assert s2.current == s1.current == 0.2 * 0.5**4  # divided after each epoch but the first
