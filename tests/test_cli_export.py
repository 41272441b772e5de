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


def serve(path, X, names=None):
    """Run the ONNX model on ``X``: one matrix input ``X``, or (``names``) one input per column of ``X``."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"X": X} if names is None else {n: X[:, [k]] for k, n in enumerate(names)}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


def serve_table(path, frame):
    """Run a table model on the raw cells of a pandas DataFrame read as text, as a user would."""
    import json

    import pandas as pd

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {m.key: m.value for m in onnx.load(path).metadata_props}
    feeds = {}
    for i in session.get_inputs():
        cells = frame[json.loads(meta["input_columns"])[i.name]]
        if i.type == "tensor(string)":
            feeds[i.name] = cells.astype(str).str.strip().to_numpy(dtype=object).reshape(-1, 1)
        else:
            dtype = np.float32 if i.type == "tensor(float)" else np.float64
            feeds[i.name] = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=dtype).reshape(-1, 1)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


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
    out = serve(tmp_path / "m.onnx", rows.astype(dtype), ["a", "b", "c"])
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
    out = serve(tmp_path / "m.onnx", rows, ["a", "b", "c"])
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


def mixed_table(n: int = 240, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": [f"c{i}" for i in range(n)],
        "age": rng.normal(40, 10, n).round(1),
        "city": rng.choice(["Paris", "Lyon", "Nice", "Brest"], n, p=[0.5, 0.3, 0.19, 0.01]),
        "rooms": rng.integers(1, 5, n),
        "income": rng.normal(50, 10, n),
    })  # fmt: skip
    df.loc[rng.choice(n, 20, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, 12, replace=False), "city"] = ""
    df.loc[rng.choice(n, 8, replace=False), "city"] = "NA"
    df.loc[rng.choice(n, 6, replace=False), "rooms"] = np.nan
    df["y"] = np.where(df["income"] + (df["city"] == "Paris") * 10 > 55, "rich", "poor")
    return df


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_table_with_text_missing_and_integer_categories_exports_with_its_column_steps(tmp_path, dtype):
    import pandas as pd

    df = mixed_table()
    df.to_csv(tmp_path / "t.csv", index=False)
    test = mixed_table(seed=1)
    test.loc[:4, "city"] = "Toulouse"  # a level never seen in training: zeros, as in predict
    test.to_csv(tmp_path / "test.csv", index=False)
    model = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--out", str(model), "--epochs", "5",
                 "--dtype", dtype, "--no-plot", "--no-progress", "-q"]) == 0  # fmt: skip
    assert main(["predict", "--model", str(model), "--data", str(tmp_path / "test.csv"), "--proba",
                 "--out", str(tmp_path / "p.csv")]) == 0  # fmt: skip
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.onnx")]) == 0
    raw = pd.read_csv(tmp_path / "test.csv", keep_default_na=False, dtype=str)
    out = serve_table(tmp_path / "m.onnx", raw)
    want = pd.read_csv(tmp_path / "p.csv")
    classes = [c for c in want.columns if c != "id"]
    tol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out["probabilities"], want[classes].to_numpy(), rtol=tol, atol=tol)
    assert onnx.load(tmp_path / "m.onnx").opset_import[0].version >= 19  # string comparisons


def test_a_table_model_with_text_columns_refuses_an_opset_below_19(tmp_path, capsys):
    mixed_table().to_csv(tmp_path / "t.csv", index=False)
    model = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--out", str(model), "--epochs", "2",
                 "--no-plot", "--no-progress", "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.onnx"), "--opset", "17"]) == 2
    assert "needs opset >= 19" in one_error_line(capsys.readouterr().err)


def test_a_table_model_with_a_date_column_is_refused_naming_it(tmp_path, capsys):
    df = mixed_table()
    df["when"] = pd_dates(len(df))
    df.to_csv(tmp_path / "t.csv", index=False)
    model = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--out", str(model), "--epochs", "2",
                 "--no-plot", "--no-progress", "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.onnx")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "date column 'when'" in line and "--drop when" in line
    assert not (tmp_path / "m.onnx").exists()


def pd_dates(n: int) -> list[str]:
    import pandas as pd

    return [d.strftime("%Y-%m-%d") for d in pd.date_range("2020-01-01", periods=n, freq="3D")]
