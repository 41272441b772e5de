"""``flatnet-xp export``: a trained model file served by onnxruntime answers as ``flatnet-xp predict`` does."""

from __future__ import annotations

import csv

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import flatnet_xp as fx  # noqa: E402
from flatnet_xp.cli import main  # noqa: E402


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def serve(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": X}), strict=True))


def one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("flatnet-xp export: error: "), err
    return lines[0]


@pytest.fixture
def rows():
    return np.random.default_rng(0).normal(3.0, 2.0, size=(40, 3))


def trained(tmp_path, X, target, *flags):
    table = [[*r, t] for r, t in zip(X.tolist(), target, strict=True)]
    data = write_csv(tmp_path / "d.csv", ["a", "b", "c", "y"], table)
    model = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(data), "--target", "y", "--out", str(model), "--epochs", "3",
                 "--no-plot", "--no-progress", "-q", *flags]) == 0  # fmt: skip
    return data, model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_regression_round_trip(tmp_path, rows, dtype, capsys):
    data, model = trained(tmp_path, rows, (rows @ [1.0, -2.0, 0.5] + 7.0).tolist(), "--dtype", dtype)
    assert main(["predict", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.onnx")]) == 0
    assert f"exported to {tmp_path / 'm.onnx'}" in capsys.readouterr().out
    header, predicted = read_csv(tmp_path / "p.csv")
    out = serve(tmp_path / "m.onnx", rows.astype(dtype))
    assert header == ["y"] and set(out) == {"output", "prediction"}
    tol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out["prediction"][:, 0], [float(v[0]) for v in predicted], rtol=tol, atol=tol)


@pytest.mark.parametrize("loss", ["cross_entropy", "bce"])
def test_classification_round_trip(tmp_path, rows, loss, capsys):
    labels = np.where(rows[:, 0] > 3.0, "high", "low")
    data, model = trained(tmp_path, rows, labels.tolist(), "--loss", loss, "--dtype", "float64")
    predict = ["predict", "--model", str(model), "--data", str(data)]
    assert main([*predict, "--out", str(tmp_path / "l.csv")]) == 0
    assert main([*predict, "--proba", "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.onnx")]) == 0
    out = serve(tmp_path / "m.onnx", rows)
    _, want_labels = read_csv(tmp_path / "l.csv")
    classes, want_proba = read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(out["label"].astype(str), [v[0] for v in want_labels])
    np.testing.assert_allclose(out["probabilities"], np.array(want_proba, dtype=float), rtol=1e-10, atol=1e-12)
    meta = {m.key: m.value for m in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert meta["class_names"] == '["high", "low"]' == str(classes).replace("'", '"')


def test_no_preprocessing_and_dtype_flags(tmp_path, rows):
    _, model = trained(tmp_path, rows, (rows[:, 0] * 2).tolist())
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.onnx"), "--no-preprocessing",
                 "--dtype", "float64", "--opset", "18"]) == 0  # fmt: skip
    net = fx.FlatMLP.load(model, dtype="float64")
    out = serve(tmp_path / "m.onnx", rows)
    assert set(out) == {"output"} and onnx.load(tmp_path / "m.onnx").opset_import[0].version == 18
    np.testing.assert_allclose(out["output"], net.predict(rows), rtol=1e-10, atol=1e-12)


def test_a_python_saved_model_exports_without_preprocessing(tmp_path):
    net = fx.FlatMLP([2, 3, 2], ["tanh", "identity"], seed=0)
    net.save(tmp_path / "n.safetensors")
    assert main(["export", "--model", str(tmp_path / "n.safetensors"), "--out", str(tmp_path / "n.onnx")]) == 0
    X = np.ones((2, 2), dtype=np.float32)
    np.testing.assert_allclose(serve(tmp_path / "n.onnx", X)["output"], net.predict(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "m.pt"], "--out m.pt: expected a .onnx file name, got '.pt'"),
        (["--out", "folder.onnx"], "is a directory"),
        (["--out", "missing/m.onnx"], "does not exist"),
        (["--model", "nothing.safetensors"], "--model nothing.safetensors: no such file"),
        (["--model", "junk.safetensors"], "not a valid flatnet_xp file"),
        (["--model", "model.onnx"], "--model and --out name the same file"),
        (["--opset", "3"], "--opset 3: expected an integer from 14"),
        (["--dtype", "float16"], "argument --dtype: invalid choice"),
    ],
)
def test_mistakes_are_one_line_with_status_2(tmp_path, monkeypatch, args, message, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    fx.FlatMLP([2, 2], "relu").save(tmp_path / "ok.safetensors")
    (tmp_path / "model.onnx").write_bytes((tmp_path / "ok.safetensors").read_bytes())
    given = {"--model": "ok.safetensors", "--out": "model.onnx"}
    given.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert main(["export", *[x for kv in given.items() for x in kv]]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "model.onnx").read_bytes() == (tmp_path / "ok.safetensors").read_bytes()  # untouched


def test_help():
    assert main(["export", "--help"]) == 0
