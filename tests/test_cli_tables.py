"""``flatnet-xp train`` / ``predict`` on tables as they come: one test per quirk of real files, the column
roles, the stored and replayed preprocessing, and the messages a new user meets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.cli import main

pd = pytest.importorskip("pandas")


def one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith(f"flatnet-xp {command}: error: "), err
    return lines[0]


def train(*args: str) -> int:
    return main(["train", *args, "--no-plot", "--no-progress", "-q"])


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small mixed table whose label depends on a number and a text column."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(u + (colour == "red") > 0.5, "yes", "no")
    return pd.DataFrame({"u": u.round(3), "v": rng.normal(size=n).round(3), "colour": colour, "label": label})


def trained(tmp_path: Path, data: Path, *flags: str, capsys=None) -> tuple[Path, str]:
    model = tmp_path / "m.safetensors"
    assert train("--data", str(data), "--out", str(model), "--epochs", "5", *flags) == 0
    out = capsys.readouterr().out if capsys is not None else ""
    return model, out


def predict(model: Path, data: Path, capsys, *flags: str) -> tuple[list[str], str]:
    assert main(["predict", "--model", str(model), "--data", str(data), *flags]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


# ------------------------------------------------------------------------------------ encodings and formats
@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("bom.csv", lambda df, p: p.write_bytes(df.to_csv(index=False).encode("utf-8-sig"))),
        ("crlf.csv", lambda df, p: p.write_bytes(df.to_csv(index=False).replace("\n", "\r\n").encode())),
        ("latin1.csv", lambda df, p: p.write_bytes(df.to_csv(index=False).encode("latin-1"))),
        ("packed.csv.gz", lambda df, p: p.write_bytes(gzip.compress(df.to_csv(index=False).encode()))),
        ("spaces.dat", lambda df, p: p.write_text(df.to_csv(index=False, sep=" "))),
        ("tabs.tsv", lambda df, p: p.write_text(df.to_csv(index=False, sep="\t"))),
    ],
    ids=["bom", "crlf", "latin-1", "csv.gz", "whitespace-dat", "tsv"],
)
def test_file_formats_train_and_predict(tmp_path, capsys, name, write):
    df = frame()
    if "latin1" in name:
        df["colour"] = df["colour"].str.replace("green", "vert clair é")
    data = tmp_path / name
    write(df, data)
    model, out = trained(tmp_path, data, "--target", "label", capsys=capsys)
    assert "60 rows, 3 feature columns" in out
    assert ("latin-1" in out) == ("latin1" in name)
    lines, err = predict(model, data, capsys)
    assert lines[0] == "label" and len(lines) == 61 and set(lines[1:]) <= {"yes", "no"}
    assert "accuracy" in err


def test_r_row_names_are_dropped(tmp_path, capsys):
    df = frame()
    body = df.to_csv(header=False, sep=" ", quoting=2).replace('"', "")
    data = tmp_path / "r.txt"
    data.write_text(" ".join(f'"{c}"' for c in df.columns) + "\n" + body)
    model, out = trained(tmp_path, data, "--target", "label", capsys=capsys)
    assert "R row names dropped" in out
    assert fx.FlatMLP.load(model).preprocessing.columns.input_columns == ("u", "v", "colour")


def test_scikit_learn_first_line_names_the_classes(tmp_path, capsys):
    data = tmp_path / "sk.csv"
    rows = "\n".join(f"{i / 10},{(i * 7 % 5) / 3},{i % 3}" for i in range(30))
    data.write_text(f"30,2,setosa,versicolor,virginica\n{rows}\n")
    model, out = trained(tmp_path, data, capsys=capsys)
    assert "scikit-learn's first line" in out
    prep = fx.FlatMLP.load(model).preprocessing
    assert prep.target_name == "target" and prep.class_names == ("setosa", "versicolor", "virginica")


def test_numeric_column_names_still_make_a_header(tmp_path, capsys):
    rng = np.random.default_rng(1)
    countries = [f"Country {i}" for i in range(40)]
    years = rng.normal(size=(40, 3)).round(3)
    data = tmp_path / "years.csv"
    rows = [f"{c},{a},{b},{t}\n" for c, (a, b, t) in zip(countries, years, strict=True)]
    data.write_text("Country Name,2006,2007,2008\n" + "".join(rows))
    model, out = trained(tmp_path, data, "--target", "2008", capsys=capsys)
    assert "a header row" in out and "target '2008'" in out
    prep = fx.FlatMLP.load(model).preprocessing
    assert prep.task == "regress" and prep.columns.input_columns == ("2006", "2007")
    assert prep.columns.id_column == "Country Name"


def test_headerless_file_with_text_first_column_is_not_taken_for_a_header(tmp_path, capsys):
    data = tmp_path / "h.csv"
    data.write_text("".join(f"{'ab'[i % 2]},{i},{i % 3}\n" for i in range(30)))
    _, out = trained(tmp_path, data, "--target", "x0", capsys=capsys)
    assert "no header row" in out


# ------------------------------------------------------------------------------------ column roles
def test_roles_table_is_printed_before_training(tmp_path, capsys):
    data = tmp_path / "t.csv"
    frame().to_csv(data, index=False)
    _, out = trained(tmp_path, data, capsys=capsys)
    table = out[out.index("columns (") : out.index("task:")]
    assert "u       numeric" in table and "colour  categorical  3 levels" in table


def test_id_column_is_dropped_and_kept_in_the_predictions(tmp_path, capsys):
    df = frame()
    df.insert(0, "customer_id", np.arange(1000, 1060))
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    model, out = trained(tmp_path, data, capsys=capsys)
    assert "customer_id  dropped" in out and "id (a different integer in every row)" in out
    lines, _ = predict(model, data, capsys)
    assert lines[0] == "customer_id,label" and lines[1].startswith("1000,")


def test_constant_and_empty_columns_are_dropped(tmp_path, capsys):
    df = frame().assign(same=7, nothing=np.nan)
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    model, out = trained(tmp_path, data, "--target", "label", capsys=capsys)
    assert "constant ('7')" in out and "empty (every value missing)" in out
    assert "same" not in fx.FlatMLP.load(model).preprocessing.columns.input_columns


def test_date_column_becomes_date_parts(tmp_path, capsys):
    df = frame()
    df["when"] = pd.date_range("2020-01-01", periods=len(df), freq="D").strftime("%Y-%m-%d")
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    model, out = trained(tmp_path, data, "--target", "label", capsys=capsys)
    assert "when    date" in out
    names = fx.FlatMLP.load(model).preprocessing.feature_names
    assert names[-4:] == ("when__days", "when__year", "when__month", "when__weekday")


def test_missing_values_at_prediction_are_imputed_as_in_training(tmp_path, capsys):
    df = frame()
    df.loc[::7, "u"] = np.nan
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    model, _ = trained(tmp_path, data, "--target", "label", capsys=capsys)
    new = tmp_path / "new.csv"
    new.write_text("u,v,colour\n,0.5,\nNA,?,red\n")
    lines, _ = predict(model, new, capsys)
    assert len(lines) == 3


def test_non_numbers_at_prediction_are_imputed_and_said_so(tmp_path, capsys):
    data = tmp_path / "t.csv"
    frame().to_csv(data, index=False)
    model, _ = trained(tmp_path, data, capsys=capsys)
    new = tmp_path / "new.csv"
    new.write_text('u,v,colour\n1.5,n/a,red\n"1,234",0.2,red\n')
    lines, err = predict(model, new, capsys)
    assert len(lines) == 3 and "note: column 'u': 1 non-numeric cells read as missing" in err


def test_unseen_level_encodes_as_zeros_never_an_error(tmp_path, capsys):
    data = tmp_path / "t.csv"
    frame().to_csv(data, index=False)
    model, _ = trained(tmp_path, data, capsys=capsys)
    new = tmp_path / "new.csv"
    new.write_text("u,v,colour\n0.1,0.2,purple\n")
    lines, err = predict(model, new, capsys)
    assert "note: column 'colour': 1 levels unseen in training (encoded as zeros)" in err
    prep = fx.FlatMLP.load(model).preprocessing
    encoded = prep.columns.transform(pd.read_csv(new))
    onehot = [i for i, n in enumerate(prep.feature_names) if n.startswith("colour=")]
    assert len(lines) == 2 and np.all(encoded[0, onehot] == 0.0)


@pytest.mark.parametrize(
    ("flags", "kept"),
    [(["--drop", "v"], ("u", "colour")), (["--features", "u,v"], ("u", "v"))],
    ids=["drop", "features"],
)
def test_drop_and_features_override_the_roles(tmp_path, capsys, flags, kept):
    data = tmp_path / "t.csv"
    frame().to_csv(data, index=False)
    model, _ = trained(tmp_path, data, *flags, capsys=capsys)
    assert fx.FlatMLP.load(model).preprocessing.columns.input_columns == kept


# ------------------------------------------------------------------------------------ stored and replayed
def test_predict_replays_the_stored_steps_exactly(tmp_path, capsys):
    df = frame()
    df.loc[::5, "colour"] = np.nan
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    model, _ = trained(tmp_path, data, "--target", "label", capsys=capsys)
    lines, _ = predict(model, data, capsys, "--proba")
    net = fx.FlatMLP.load(model)
    prep = net.preprocessing
    expected = np.asarray(net.predict_proba(prep.transform(prep.columns.transform(pd.read_csv(data)))))
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert lines[0] == "no,yes" and np.array_equal(got, expected)


def test_predict_reports_r2_for_regression(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    data = tmp_path / "r.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "price": X @ [2.0, -1.0] + 0.5}).to_csv(data, index=False)
    model, _ = trained(tmp_path, data, capsys=capsys)
    assert main(["predict", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    assert "R^2 " in capsys.readouterr().out


def test_poisson_model_predicts_the_rate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=100)
    data = tmp_path / "c.csv"
    pd.DataFrame({"x": x, "count": rng.poisson(np.exp(1 + x)).astype(float) + 0.5}).to_csv(data, index=False)
    model, _ = trained(tmp_path, data, "--loss", "poisson", capsys=capsys)
    lines, _ = predict(model, data, capsys)
    net = fx.FlatMLP.load(model)
    prep = net.preprocessing
    rate = np.exp(np.asarray(net.predict(prep.transform(prep.columns.transform(pd.read_csv(data))))))[:, 0]
    assert np.allclose([float(v) for v in lines[1:]], rate) and np.all(rate > 0)


def test_default_training_stops_early_with_the_best_weights(tmp_path, capsys):
    data = tmp_path / "t.csv"
    frame(200).to_csv(data, index=False)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m.st"), "--no-plot", "-q"]) == 0
    out = capsys.readouterr().out
    assert "early stopping, patience 10" in out and "stopped early, restored the weights of epoch" in out


# ------------------------------------------------------------------------------------ messages
def test_model_flag_given_a_table(tmp_path, capsys):
    data = tmp_path / "t.csv"
    frame().to_csv(data, index=False)
    assert main(["predict", "--model", str(data), "--data", str(data)]) == 2
    line = one_error_line(capsys.readouterr().err, "predict")
    assert "a table, not a model" in line and "overwritten" not in line


def test_model_flag_given_a_file_that_is_not_safetensors(tmp_path, capsys):
    model = tmp_path / "m.bin"
    model.write_bytes(b"garbage that is long enough")
    data = tmp_path / "t.csv"
    frame().to_csv(data, index=False)
    assert main(["predict", "--model", str(model), "--data", str(data)]) == 2
    assert "not a model file (not safetensors)" in one_error_line(capsys.readouterr().err, "predict")


def test_data_flag_given_a_folder(tmp_path, capsys):
    assert train("--data", str(tmp_path), "--out", str(tmp_path / "m.st")) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert "is a folder" in line and "no extension" not in line


def test_unknown_target_shows_close_matches(tmp_path, capsys):
    data = tmp_path / "t.csv"
    cols = {f"feature_{i}": [1.0, 2.0] for i in range(30)} | {"survived": ["y", "n"]}
    pd.DataFrame(cols).to_csv(data, index=False)
    assert train("--data", str(data), "--target", "survive", "--out", str(tmp_path / "m.st")) == 2
    assert "did you mean 'survived'?" in one_error_line(capsys.readouterr().err, "train")


def test_numbers_in_messages_are_plain(tmp_path, capsys):
    data = tmp_path / "t.csv"
    data.write_text("a,b\n1,0.5\n2,1.5\n")
    assert train("--data", str(data), "--task", "classify", "--out", str(tmp_path / "m.st")) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert "non-integer numbers (e.g. 0.5)" in line and "np." not in line


def test_model_without_column_steps_reads_its_columns_from_a_csv(tmp_path, capsys):
    """A model trained on a .npz (numbers only; also every model of format version 1) needs exactly
    its feature columns, numeric, in order."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    np.savez(tmp_path / "t.npz", X=X, y=np.where(X[:, 0] > 0, "pos", "neg"), feature_names=np.array(["u", "v"]))
    model = tmp_path / "t.st"
    assert train("--data", str(tmp_path / "t.npz"), "--out", str(model), "--epochs", "2") == 0
    assert fx.FlatMLP.load(model).preprocessing.columns is None
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("u,v\n0.5,1.0\n-1.0,2.0\n")
    bad.write_text("u,v\n0.5,\n")
    capsys.readouterr()
    lines, _ = predict(model, good, capsys)
    assert lines[0] == "y" and len(lines) == 3
    assert main(["predict", "--model", str(model), "--data", str(bad)]) == 2
    line = one_error_line(capsys.readouterr().err, "predict")
    assert "missing or non-numeric value at data row 1, column 'v'" in line


def test_a_header_of_years_only_is_a_header(tmp_path, capsys):
    rng = np.random.default_rng(2)
    data = tmp_path / "years.csv"
    values = rng.normal(size=(30, 4)).round(3)
    data.write_text("2005,2006,2007,2008\n" + "".join(",".join(map(str, row)) + "\n" for row in values))
    model, out = trained(tmp_path, data, capsys=capsys)
    assert "30 rows" in out and "target '2008'" in out
    assert fx.FlatMLP.load(model).preprocessing.columns.input_columns == ("2005", "2006", "2007")


def test_r_write_csv_row_names_under_an_empty_name_are_dropped(tmp_path, capsys):
    data = tmp_path / "r.csv"
    frame(12).to_csv(data, index_label="")
    assert data.read_text().startswith(",u,v,colour,label")
    model, out = trained(tmp_path, data, capsys=capsys)
    assert "R row names dropped" in out
    assert fx.FlatMLP.load(model).preprocessing.columns.input_columns == ("u", "v", "colour")


def test_stray_texts_in_a_numeric_target_drop_their_rows(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    y = [f"{v:.3f}" for v in 2 * x + 1]
    y[5] = "n.a."
    data = tmp_path / "t.csv"
    pd.DataFrame({"x": x, "price": y}).to_csv(data, index=False)
    model, out = trained(tmp_path, data, capsys=capsys)
    assert "59 rows" in out and "1 rows without a target value (missing or not a number) dropped" in out
    assert fx.FlatMLP.load(model).preprocessing.task == "regress"
