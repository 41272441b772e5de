"""Figures of a benchmark run: training throughput per configuration, and step time against width and batch.

Every figure has a title; every panel has axis labels, a legend for each colour it uses, and names
the layer sizes, dtype and batch size it ran. Figures are built as ``matplotlib.figure.Figure``
objects (no pyplot state) so that tests can inspect them; :func:`plot_results` writes them as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FAMILIES", "family", "plot_results", "scaling_figure", "throughput_figure"]

#: Implementation families: colour and legend label (one colour per family, in every figure).
FAMILIES: dict[str, tuple[str, str]] = {
    "flatnet_xp": ("#1f77b4", "flatnet_xp (this library)"),
    "torch": ("#ff7f0e", "PyTorch, native nn + optim"),
    "jax": ("#2ca02c", "JAX, hand-written jit + scan"),
    "sklearn": ("#9467bd", "scikit-learn MLP"),
    "seed_loops": ("#7f7f7f", "the seed's Python loops"),
}


def family(rec: dict[str, Any]) -> str:
    """The family of a record or scaling point: its ``impl`` when known, else ``seed_loops``'s grey."""
    return rec["impl"] if rec["impl"] in FAMILIES else "seed_loops"


def _tick(v: float, _pos: Any = None) -> str:
    """Plain tick labels: ``0.2, 1, 50``; ``2k, 1.5M`` from a thousand on."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _config_title(rec: dict[str, Any]) -> str:
    return f"{rec['config']}: layers {rec['sizes']}, {rec['dtype']}, batch {rec['batch']}"


def _log_axis(axis: Any, lo: float, hi: float) -> None:
    """Log scale with plain labels at 1-2-5 steps over up to three decades, else at powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    subs = (1.0, 2.0, 5.0) if hi / lo <= 1000 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(_tick))
    axis.set_minor_formatter(NullFormatter())


#: Hatching of the extra bar that JIT implementations get: throughput of a fresh 10-epoch fit, compile included.
FIT10_HATCH = "////"


def _bars(rows: list[dict[str, Any]]) -> list[tuple[str, float, str, str]]:
    """``(tick label, samples/s, colour family, bar label)`` per bar: each record, and below a JIT
    record a hatched bar for its 10-epoch fit with compilation."""
    out = []
    for r in rows:
        pct = r.get("peak_fraction")
        text = f" {_tick(r['samples_per_sec'])}/s"
        if pct is not None and pct >= 1e-3:
            text += f", {100 * pct:.0f}% of peak" if pct >= 0.1 else f", {100 * pct:.2g}% of peak"
        out.append((f"{r['impl']} / {r['backend']}", r["samples_per_sec"], family(r), text))
        if r.get("fit10_ms_per_step"):
            fit10 = r["batch"] / r["fit10_ms_per_step"] * 1e3
            out.append((f"{r['impl']} / {r['backend']}, 10-epoch fit", fit10, family(r), f" {_tick(fit10)}/s"))
    return out


def _throughput_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    from matplotlib.patches import Patch

    bars = _bars(rows)
    y = list(range(len(bars)))
    values = [b[1] for b in bars]
    drawn = ax.barh(y, values, color=[FAMILIES[b[2]][0] for b in bars], height=0.7)
    for bar, (tick, *_rest) in zip(drawn, bars, strict=True):
        if tick.endswith("10-epoch fit"):
            bar.set(hatch=FIT10_HATCH, alpha=0.45, edgecolor="black")
    lo, hi = min(values) / 2, max(values) * 30  # room for the labels right of the bars
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    _log_axis(ax.xaxis, lo, hi)
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    for yi, (_tick_label, value, _fam, text) in zip(y, bars, strict=True):
        ax.text(value, yi, text, va="center", fontsize=7)
    ax.set_xlabel("training samples / s (log scale, higher is better)")
    ax.set_ylabel("implementation / backend")
    ax.set_title(_config_title(rows[0]), fontsize=9, loc="left")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    handles = [Patch(color=FAMILIES[f][0], label=FAMILIES[f][1]) for f in dict.fromkeys(b[2] for b in bars)]
    if any(r.get("fit10_ms_per_step") for r in rows):
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="black",
                hatch=FIT10_HATCH,
                label="fresh 10-epoch fit,\nJIT compile included",
            )
        )
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def throughput_figure(records: list[dict[str, Any]]) -> Any:
    """Horizontal bars of samples/s per implementation, one panel per configuration (one column)."""
    from matplotlib.figure import Figure

    cfgs = list(dict.fromkeys(r["config"] for r in records))
    bars = [len(_bars([r for r in records if r["config"] == c])) for c in cfgs]
    fig = Figure(figsize=(11, 0.9 + sum(1.0 + 0.28 * n for n in bars)), layout="constrained")
    grid = fig.add_gridspec(len(cfgs), 1, height_ratios=[1.0 + 0.28 * n for n in bars])
    for i, cfg in enumerate(cfgs):
        _throughput_panel(fig.add_subplot(grid[i]), [r for r in records if r["config"] == cfg])
    first = records[0]
    fig.suptitle(
        f"Training throughput on {first['device']}: plain SGD, median of {first['repeats']} repeats\n"
        "labels: samples/s and, where counted, % of the run's GEMM peak (6 x batch x weights flops per step)",
        fontsize=10,
    )
    return fig


def _scaling_title(axis: str, pts: list[dict[str, Any]]) -> str:
    p = pts[0]
    if axis == "width":
        return f"width sweep: layers [w, w, w, w], {p['dtype']}, batch {p['batch']}"
    return f"batch sweep: layers {p['sizes']}, {p['dtype']}, batch on the x axis"


def scaling_figure(scale: list[dict[str, Any]]) -> Any:
    """Step time against width and against batch size, one line per implementation/backend."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = [a for a in ("width", "batch") if any(r["axis"] == a for r in scale)]
    xlabels = {"width": "width w (log scale)", "batch": "batch size (log scale)"}
    for i, axis in enumerate(axes):
        ax = fig.add_subplot(1, len(axes), i + 1)
        pts_axis = [r for r in scale if r["axis"] == axis]
        for n, key in enumerate(dict.fromkeys((r["impl"], r["backend"]) for r in pts_axis)):
            pts = [r for r in pts_axis if (r["impl"], r["backend"]) == key]
            ax.plot(
                [p["value"] for p in pts],
                [p["step_ms_median"] for p in pts],
                "os^vD"[n % 5] + "-",
                color=FAMILIES[family(pts[0])][0],
                alpha=1.0 if n < 2 else 0.7,
                label=" / ".join(str(k) for k in key),
            )
        values = sorted({r["value"] for r in pts_axis})
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}"))  # 1024, not 1.02k
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        times = [r["step_ms_median"] for r in pts_axis]
        _log_axis(ax.yaxis, min(times), max(times))
        ax.set_xlabel(xlabels[axis])
        ax.set_ylabel("ms per training step (log scale, lower is better)")
        ax.set_title(_scaling_title(axis, pts_axis), fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, title="implementation / backend", title_fontsize=8)
    fig.suptitle("Step time against network width and batch size (median of 3 repeats, plain SGD)", fontsize=10)
    return fig


def plot_results(records: list[dict[str, Any]], scale: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write ``samples_per_sec.png`` (:func:`throughput_figure`) and, with a sweep, ``scaling.png``
    (:func:`scaling_figure`) into ``out``; returns the paths written."""
    from flatnet_xp._atomic import save_figure

    figures = [("samples_per_sec.png", throughput_figure(records))] if records else []
    if scale:
        figures.append(("scaling.png", scaling_figure(scale)))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures:
        save_figure(fig, out / name, dpi=110)
        written.append(out / name)
    return written
