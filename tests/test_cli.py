"""The flatnet-xp command end to end: demo, train, bench, and their --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flatnet_xp", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.parametrize("command", [[], ["demo"], ["bench"], ["train"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: flatnet-xp" in capsys.readouterr().out


def test_demo_runs_as_a_module(tmp_path):
    proc = run_cli("demo", "--plot", str(tmp_path / "c.png"))
    assert proc.returncode == 0, proc.stderr
    assert "reproduced" in proc.stdout and (tmp_path / "c.png").exists()


@pytest.fixture
def digits_files(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16.0, y[:600]
    np.savez(tmp_path / "digits.npz", X=X, y=y)
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    np.savetxt(tmp_path / "digits.csv", np.column_stack([X, y]), delimiter=",", header=header, comments="")
    return tmp_path


@pytest.mark.parametrize("data", ["digits.npz", "digits.csv"])
def test_train_writes_a_model_that_loads(digits_files, data):
    out = digits_files / "m.safetensors"
    code = main(
        [
            "train",
            "--data",
            str(digits_files / data),
            "--layers",
            "64,32,10",
            "--activation",
            "relu",
            "--loss",
            "cross_entropy",
            "--optimizer",
            "adam",
            "--lr",
            "1e-2",
            "--epochs",
            "15",
            "--batch-size",
            "32",
            "--backend",
            "numpy",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    net = fx.FlatMLP.load(out)
    assert net.layout.sizes == (64, 32, 10) and net.activations == ("relu", "identity")
    assert out.with_suffix(".png").exists()
    X = np.load(digits_files / "digits.npz")["X"]
    y = np.load(digits_files / "digits.npz")["y"]
    assert net.score(X, y, loss="cross_entropy") > 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.npz"], "No such file"),
        (["--data", "{dir}/bad.npz"], "not a readable .npz"),
        (["--data", "{dir}/digits.txt"], "expected a .npz or .csv file"),
        (
            ["--data", "{dir}/digits.npz", "--layers", "10,10"],
            "--layers: the first width must be the number of features, 64",
        ),
        (["--data", "{dir}/digits.npz", "--epochs", "-1"], "epochs: expected an integer >= 0"),
        (["--data", "{dir}/digits.csv", "--target", "nope"], "--target 'nope': not a column"),
        (["--data", "{dir}/pickled.npz"], "not a readable .npz"),
    ],
)
def test_train_reports_bad_files_and_values_in_one_line(digits_files, args, message, capsys):
    (digits_files / "bad.npz").write_bytes(b"not a zip")
    (digits_files / "digits.txt").write_text("1,2\n")
    np.savez(digits_files / "pickled.npz", X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    argv = [a.replace("{dir}", str(digits_files)) for a in args]
    if "--layers" not in argv:
        argv += ["--layers", "64,10"]
    code = main(["train", *argv, "--out", str(digits_files / "m.safetensors"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("flatnet-xp train: error:") and message in err


@pytest.mark.parametrize("flag", [["--layers", "64,x"], ["--lr", "-1"], ["--val-split", "1.5"], ["--loss", "hinge"]])
def test_train_rejects_bad_flags(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "d.npz", "--layers", "64,10", *flag])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_bench_quick_writes_results_and_plots(tmp_path):
    proc = run_cli(
        "bench", "--quick", "--config", "seed-per-sample", "--no-scaling", "--no-progress", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "results.json").read_text())
    impls = {(r["impl"], r["backend"]) for r in records}
    assert ("flatnet_xp", "numpy") in impls and ("seed_loops", "numpy") in impls
    for r in records:
        assert {"impl", "backend", "config", "samples_per_sec", "gflops", "peak_fraction"} <= set(r)
        assert r["samples_per_sec"] > 0
    env = json.loads((tmp_path / "environment.json").read_text())
    assert "blas" in env and "OPENBLAS_CORETYPE" in env["env"]
    assert (tmp_path / "samples_per_sec.png").exists()
    assert "speed-up of flatnet_xp" in proc.stdout


def test_bench_rejects_bad_values(capsys):
    assert main(["bench", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
