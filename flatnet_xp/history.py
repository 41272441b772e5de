"""Training history: per-epoch and per-step records, JSON round-trip, and a matplotlib plot."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

__all__ = ["Callback", "DivergenceError", "History"]


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite loss, gradient, parameter or optimizer state.

    ``fit`` never leaves non-finite parameters behind: on CPU backends the parameters and the
    optimizer state are restored to those before the offending step (the epoch is replayed up to
    it from a snapshot taken at its start); on GPU backends, which check once per epoch to avoid a
    host synchronisation per step, and on JAX, whose epoch is one compiled program, to those at the
    start of the diverging epoch. :class:`~flatnet_xp.LBFGS` restores the parameters it started
    from (``epoch`` 1, ``step`` None). Both a ``FloatingPointError`` and a ``ValueError``.

    Attributes
    ----------
    epoch : int
        Epoch in which it happened, counted from 1.
    step : int or None
        Step within that epoch, counted from 1 (None where only the epoch is known).
    """

    def __init__(self, message: str, epoch: int, step: int | None) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step

    @classmethod
    def epoch_restored(cls, epoch: int, losses: Any) -> DivergenceError:
        """The error of an epoch checked as a whole (GPU, compiled JAX): the parameters and state
        are those of its start; ``losses`` (host array) locates the first non-finite step, if any."""
        bad = np.flatnonzero(~np.isfinite(losses))
        where = f", step {bad[0] + 1}" if bad.size else " (in an update)"
        return cls(
            f"non-finite loss, gradient or update at epoch {epoch + 1}{where}; the parameters and optimizer "
            "state are those at the start of this epoch: lower the learning rate or set clip_norm",
            epoch + 1,
            int(bad[0]) + 1 if bad.size else None,
        )


_INF = {"inf": math.inf, "-inf": -math.inf}


def _to_json(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _is_json_number(x: Any) -> bool:
    return x is None or type(x) in (int, float) or (isinstance(x, str) and x in _INF)


def _from_json(x: Any) -> float:
    return math.nan if x is None else _INF[x] if isinstance(x, str) else float(x)


@dataclass
class History:
    """What ``fit`` records.

    Attributes
    ----------
    loss : list of float
        Mean training loss of each epoch (sample-weighted mean of its batch losses).
    batch_loss : list of float
        Every step's loss on its batch, computed before that step's update.
    val_loss, val_accuracy : list of float
        Per-epoch validation loss and (classification losses only) accuracy.
    val_score : list of float
        Per-epoch validation score: accuracy for classification losses, R^2 for the others
        (scikit-learn's ``score``).
    epoch_time : list of float
        Wall-clock seconds of each epoch (training and validation).
    best_epoch : int or None
        With early stopping: the epoch (counted from 1) whose weights were restored.
    stopped_early : bool
        True when early stopping, a schedule or a callback ended training before ``epochs``.
    """

    loss: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.loss)

    def __repr__(self) -> str:
        """A one-line summary (the per-batch losses can run to thousands of numbers; they stay in
        ``batch_loss``)."""
        parts = [f"epochs={self.epochs}"]
        if self.loss:
            parts.append(f"loss {self.loss[0]:.4g} -> {self.loss[-1]:.4g}")
        if self.val_loss:
            parts.append(f"val_loss {self.val_loss[-1]:.4g}")
        if self.val_score:
            parts.append(f"val_score {self.val_score[-1]:.4g}")
        if self.best_epoch is not None:
            parts.append(f"best_epoch={self.best_epoch}")
        if self.stopped_early:
            parts.append("stopped_early")
        parts.append(f"{len(self.batch_loss)} batch losses")
        return f"History({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: NaN written as None, infinities as ``"inf"`` / ``"-inf"``."""
        return {k: [_to_json(x) for x in v] if isinstance(v, list) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`; raises ValueError on unknown or malformed fields."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - names:
            raise ValueError(
                f"history: unexpected fields {sorted(set(data) - names) if isinstance(data, dict) else data!r}"
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if f.name == "best_epoch":
                if v is not None and (type(v) is not int or v < 1):
                    raise ValueError(f"history.best_epoch: expected None or an epoch >= 1, got {v!r}")
            elif f.name == "stopped_early":
                if type(v) is not bool:
                    raise ValueError(f"history.stopped_early: expected a bool, got {v!r}")
            elif not isinstance(v, list) or not all(_is_json_number(x) for x in v):
                raise ValueError(f"history.{f.name}: expected a list of numbers")
            else:
                v = [_from_json(x) for x in v]
            kwargs[f.name] = v
        return cls(**kwargs)

    def plot(self, log_scale: bool = False, ax: Any = None) -> Any:
        """Training (and validation) loss per epoch as a matplotlib Figure.

        Parameters
        ----------
        log_scale : bool
            Logarithmic loss axis.
        ax : matplotlib Axes, optional
            Draw into it instead of a new figure.

        Returns
        -------
        matplotlib.figure.Figure
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("History.plot needs matplotlib: pip install 'flatnet_xp[plot]'") from exc
        if ax is None:
            fig = Figure(figsize=(6, 4), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        epochs = range(1, self.epochs + 1)
        ax.plot(epochs, self.loss, marker="o", ms=3, label="training loss")
        if self.val_loss:
            ax.plot(range(1, len(self.val_loss) + 1), self.val_loss, marker="s", ms=3, label="validation loss")
        if self.best_epoch is not None:
            ax.axvline(self.best_epoch, color="grey", ls=":", label=f"best epoch ({self.best_epoch})")
        if log_scale:
            ax.set_yscale("log")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(True, alpha=0.3)
        return fig


class Callback(Protocol):
    """Called by ``fit`` at the end of every epoch: ``callback(net, history) -> bool | None``.

    ``history`` already holds the epoch just finished (``history.loss[-1]`` and so on). Return
    ``True`` to stop training after this epoch; any other return value continues. A plain function
    with this signature is a Callback.
    """

    def __call__(self, net: Any, history: History) -> bool | None: ...
