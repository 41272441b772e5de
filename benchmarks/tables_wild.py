"""Tables from the wild: ``flatnet-xp train`` + ``predict`` against a plain pandas + scikit-learn pipeline.

The tables ship in pip packages (statsmodels' datasets, vega_datasets' local data, scikit-learn's
bundled CSVs), plus copies with the quirks users meet (a BOM, CRLF line ends, latin-1, .csv.gz,
whitespace-separated .dat, R row names, no header, missing values, an ID column). Each table is
split at random (seed 0) into 75 % training and 25 % held-out rows (so the held-out rows can hold
category levels never seen in training), both written in the table's own format. Then:

- the CLI: ``flatnet-xp train --data train --target T`` (no other flag) and
  ``flatnet-xp predict --model m --data test``, whose accuracy or R^2 line is read;
- the baseline: the same rows as pandas DataFrames, a ``ColumnTransformer`` (numbers: median
  imputation + ``StandardScaler``; text: most-frequent imputation + ``OneHotEncoder(handle_unknown="ignore")``)
  and scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` with their defaults.

Tables above 4000 rows are subsampled to 4000 (time). Prints a markdown table.

Usage: ``python benchmarks/tables_wild.py [--only NAME...]``
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

SITE = Path(pd.__file__).parent.parent
SM = SITE / "statsmodels" / "datasets"
VEGA = SITE / "vega_datasets" / "_data"
SK = SITE / "sklearn" / "datasets" / "data"
MAX_ROWS = 4000


# ------------------------------------------------------------------------------------ writers
def w_csv(df: pd.DataFrame, path: Path, **kw: object) -> Path:
    df.to_csv(path, index=False, **kw)  # type: ignore[call-overload]
    return path


def w_bom(df: pd.DataFrame, path: Path) -> Path:
    return w_csv(df, path, encoding="utf-8-sig")


def w_crlf(df: pd.DataFrame, path: Path) -> Path:
    return w_csv(df, path, lineterminator="\r\n")


def w_latin1(df: pd.DataFrame, path: Path) -> Path:
    return w_csv(df, path, encoding="latin-1", errors="replace")


def w_gz(df: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".csv.gz")
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        df.to_csv(fh, index=False)
    return path


def w_dat(df: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".dat")
    df.to_csv(path, index=False, sep=" ")
    return path


def w_rownames(df: pd.DataFrame, path: Path) -> Path:
    """R's write.table: a header one field shorter than the rows (row names first)."""
    body = df.copy()
    body.index = [f"r{i + 1}" for i in range(len(df))]
    text = " ".join(f'"{c}"' for c in df.columns) + "\n" + body.to_csv(header=False, sep=" ", quoting=2)
    path.with_suffix(".txt").write_text(text)
    return path.with_suffix(".txt")


def w_headerless(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False, header=False)
    return path


def w_sklearn(df: pd.DataFrame, path: Path) -> Path:
    """scikit-learn's bundled format: ``n_samples,n_features,class names`` then rows, label codes last."""
    classes = sorted(df.iloc[:, -1].astype(str).unique())
    codes = df.iloc[:, -1].astype(str).map({c: i for i, c in enumerate(classes)})
    body = df.iloc[:, :-1].assign(_t=codes)
    head = f"{len(df)},{df.shape[1] - 1},{','.join(classes)}\n"
    path.write_text(head + body.to_csv(index=False, header=False))
    return path


def w_semicolon(df: pd.DataFrame, path: Path) -> Path:
    return w_csv(df, path, sep=";")


# ------------------------------------------------------------------------------------ tables
def sm(name: str, folder: str | None = None, **kw: object) -> Callable[[], pd.DataFrame]:
    return lambda: pd.read_csv(SM / (folder or name) / f"{name}.csv", **kw)  # type: ignore[call-overload]


def vega(name: str) -> Callable[[], pd.DataFrame]:
    return lambda: pd.read_csv(VEGA / f"{name}.csv")


def sk_table(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        head = (SK / name).read_text().splitlines()[0].split(",")
        df = pd.read_csv(SK / name, skiprows=1, header=None)
        df.columns = [*(f"x{j}" for j in range(df.shape[1] - 1)), "target"]
        df["target"] = [head[2 + int(v)] for v in df["target"]]
        return df

    return load


def diabetes() -> pd.DataFrame:
    X = pd.read_csv(SK / "diabetes_data_raw.csv.gz", sep=r"\s+", header=None)
    X.columns = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    X["progression"] = np.loadtxt(SK / "diabetes_target.csv.gz")
    return X


def with_missing(load: Callable[[], pd.DataFrame], target: str, share: float = 0.1) -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        df = load()
        rng = np.random.default_rng(1)
        for c in df.columns:
            if c != target:
                df.loc[rng.random(len(df)) < share, c] = np.nan
        return df

    return make


def with_id(load: Callable[[], pd.DataFrame]) -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        df = load()
        df.insert(0, "customer_id", np.random.default_rng(2).permutation(len(df)) + 10_000)
        return df

    return make


def anes() -> pd.DataFrame:
    df = pd.read_csv(SM / "anes96" / "anes96.csv", sep="\t")
    df.columns = [c.strip("'") for c in df.columns]
    return df


def spector() -> pd.DataFrame:
    df = pd.read_csv(SM / "spector" / "spector.csv", sep=r"\s+")
    df.columns = [c.strip("'") for c in df.columns]
    return df


def fertility() -> pd.DataFrame:
    df = pd.read_csv(SM / "fertility" / "fertility.csv")
    return df.drop(columns=["Indicator Name", "Indicator Code"])


TABLES: list[tuple[str, Callable[[], pd.DataFrame], str, Callable[[pd.DataFrame, Path], Path]]] = [
    ("anes96 (tab)", anes, "vote", lambda d, p: w_csv(d, p, sep="\t")),
    ("ccard (CRLF)", sm("ccard"), "AVGEXP", w_crlf),
    ("committee (text ID)", sm("committee"), "BILLS104", w_csv),
    ("copper", sm("copper"), "WORLDCONSUMPTION", w_csv),
    ("cpunish (text ID)", sm("cpunish"), "EXECUTIONS", w_csv),
    ("engel (R row names)", sm("engel"), "foodexp", w_rownames),
    ("fair", sm("fair"), "affairs", w_csv),
    ("fair_pt (ID column)", sm("fair_pt", "fair"), "naffairs", w_csv),
    ("fertility (year names, NA)", fertility, "2008", w_csv),
    ("fertility (latin-1)", fertility, "2008", w_latin1),
    ("grunfeld (text feature)", sm("grunfeld"), "invest", w_csv),
    ("heart", sm("heart"), "survival", w_csv),
    ("longley", sm("longley"), "TOTEMP", w_csv),
    ("macrodata", sm("macrodata"), "infl", w_csv),
    ("modechoice (;)", sm("modechoice", sep=";"), "choice", w_semicolon),
    ("randhie", sm("randhie"), "mdvis", w_csv),
    ("scotvote", sm("scotvote", "scotland"), "YES", w_csv),
    ("spector (whitespace .dat)", spector, "GRADE", w_dat),
    ("stackloss", sm("stackloss"), "STACKLOSS", w_csv),
    ("star98", sm("star98"), "MATHTOT", w_csv),
    ("statecrime (text ID)", sm("statecrime"), "murder", w_csv),
    ("strikes", sm("strikes"), "duration", w_csv),
    ("cancer", sm("cancer"), "cancer", w_csv),
    ("danish_data (BOM in the file)", sm("data", "danish_data"), "lrm", w_bom),
    ("iowa-electricity", vega("iowa-electricity"), "net_generation", w_csv),
    ("la-riots (text, dates, NA)", vega("la-riots"), "gender", w_csv),
    ("seattle-weather (date, .csv.gz)", vega("seattle-weather"), "weather", w_gz),
    ("seattle-temps (date)", vega("seattle-temps"), "temp", w_csv),
    ("stocks (date, text)", vega("stocks"), "price", w_csv),
    ("us-employment (date)", vega("us-employment"), "nonfarm", w_csv),
    ("airports (text)", vega("airports"), "latitude", w_csv),
    ("iris (sklearn format)", sk_table("iris.csv"), "target", w_sklearn),
    ("breast_cancer (sklearn format)", sk_table("breast_cancer.csv"), "target", w_sklearn),
    ("wine (sklearn format)", sk_table("wine_data.csv"), "target", w_sklearn),
    ("iris (BOM)", sk_table("iris.csv"), "target", w_bom),
    ("iris (no header)", sk_table("iris.csv"), "target", w_headerless),
    ("iris (10% missing)", with_missing(sk_table("iris.csv"), "target"), "target", w_csv),
    ("wine (ID column)", with_id(sk_table("wine_data.csv")), "target", w_csv),
    ("diabetes (whitespace .dat)", diabetes, "progression", w_dat),
]


# ------------------------------------------------------------------------------------ the two sides
def is_classification(y: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(y) or y.dtype == bool:
        return True
    v = y.dropna().to_numpy(dtype=float)
    return bool(np.all(v == np.round(v)) and np.unique(v).shape[0] <= 20)


def baseline(train: pd.DataFrame, test: pd.DataFrame, target: str) -> float:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, Xt = train.drop(columns=[target]), test.drop(columns=[target])
    num = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and X[c].notna().any()]
    cat = [c for c in X.columns if c not in num and X[c].notna().any()]
    X[cat], Xt[cat] = X[cat].astype(str), Xt[cat].astype(str)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                cat,
            ),
        ]
    )
    y, yt = train[target], test[target]
    classify = is_classification(y)
    model = MLPClassifier(random_state=0) if classify else MLPRegressor(random_state=0)
    if classify:
        y, yt = y.astype(str), yt.astype(str)
    pipe = Pipeline([("pre", pre), ("mlp", model)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X, y)
        pred = pipe.predict(Xt)
    return float(accuracy_score(yt, pred) if classify else r2_score(yt, pred))


def run_cli(train: Path, test: Path, target: str, work: Path) -> tuple[float | None, str, float]:
    env = dict(os.environ)
    model = work / "model.safetensors"
    cmd = [sys.executable, "-m", "flatnet_xp", "train", "--data", str(train), "--target", target]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, "--out", str(model), "--no-plot", "-q"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        return None, "train: " + r.stderr.strip().splitlines()[-1][:150], seconds
    predict = ["predict", "--model", str(model), "--data", str(test), "--out", str(work / "p.csv")]
    r = subprocess.run(
        [sys.executable, "-m", "flatnet_xp", *predict],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode != 0:
        return None, "predict: " + r.stderr.strip().splitlines()[-1][:150], seconds
    m = re.search(r"(accuracy|R\^2) (-?[0-9.]+|nan)", r.stdout)
    if not m:
        return None, "predict printed no score", seconds
    return float(m.group(2)), m.group(1), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="table names containing these words")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, load, target, write) in enumerate(TABLES):
            if args.only and not any(w in name for w in args.only):
                continue
            df = load()
            if len(df) > MAX_ROWS:
                df = df.sample(MAX_ROWS, random_state=0).reset_index(drop=True)
            order = np.random.default_rng(0).permutation(len(df))
            n_test = max(1, len(df) // 4)
            train, test = df.iloc[order[n_test:]].reset_index(drop=True), df.iloc[order[:n_test]].reset_index(drop=True)
            train, test = train[train[target].notna()], test[test[target].notna()]
            work = Path(tmp) / f"t{i}"
            work.mkdir()
            f_train, f_test = write(train, work / "train.csv"), write(test, work / "test.csv")
            try:
                base: float | None = baseline(train, test, target)
            except Exception as exc:  # the baseline's own failure is reported, not fatal
                base, why = None, f"baseline: {type(exc).__name__}"
            cli_target = f"x{list(df.columns).index(target)}" if write is w_headerless else target
            ours, what, seconds = run_cli(f_train, f_test, cli_target, work)
            metric = "accuracy" if is_classification(train[target]) else "R^2"
            if ours is None:
                verdict = what
            elif base is None:
                verdict = why
            else:
                tol = 0.05 if metric == "accuracy" else 0.10
                verdict = "ok" if ours >= base - tol else f"worse by {base - ours:.3f}"
            rows.append((name, f"{len(df)}x{df.shape[1]}", f_train.name, metric, base, ours, seconds, verdict))
            print(f"{name}: {metric} baseline {base} cli {ours} ({seconds:.1f} s) {verdict}", file=sys.stderr)
    print("| table | rows x cols | file | metric | pandas+sklearn | flatnet-xp | train s | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for name, shape, fname, metric, base, ours, seconds, verdict in rows:
        b = "-" if base is None else f"{base:.3f}"
        o = "-" if ours is None else f"{ours:.3f}"
        print(f"| {name} | {shape} | {fname} | {metric} | {b} | {o} | {seconds:.1f} | {verdict} |")
    ok = sum(r[-1] == "ok" for r in rows)
    print(f"\n{ok} of {len(rows)} tables within 0.05 accuracy / 0.10 R^2 of the baseline or better")


if __name__ == "__main__":
    main()
