"""Learning-rate schedules: small objects mapping the optimizer step count to a learning rate.

A schedule is called with ``t``, the number of updates already made (0 for the first update), and
returns a number. Pass one wherever an optimizer takes ``lr``. Counting steps rather than epochs
lets warm-up act within the first epoch; for an epoch-based schedule use ``steps_per_epoch =
ceil(n_samples / batch_size)``. Any callable ``schedule(t) -> float`` works; its value is checked at
every step (finite and ``>= 0``, else a ``ValueError`` naming the step).

The built-in schedules are pure functions of ``t`` written with ``**``, ``min`` and cosine only, so
the compiled JAX epoch evaluates them from the step counter inside the program
(:meth:`Constant.traced` etc.); other callables are evaluated on the host once per step. A schedule
with an ``end_epoch(value) -> bool`` method (:class:`ReduceOnPlateau`) is told the monitored loss
after every epoch of ``fit`` and may stop training by returning True.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from flatnet_xp._validation import check_int, check_real, describe

__all__ = [
    "Constant",
    "Cosine",
    "InvScaling",
    "ReduceOnPlateau",
    "Schedule",
    "StepDecay",
    "Warmup",
    "as_schedule",
    "checked_lr",
    "describe_schedule",
    "traced_schedule",
]


@runtime_checkable
class Schedule(Protocol):
    """Anything callable as ``schedule(t) -> float`` for ``t = 0, 1, 2, ...``."""

    def __call__(self, t: int) -> float: ...


def checked_lr(schedule: Schedule, t: int) -> float:
    """``schedule(t)`` as a float, or a ValueError naming the step if it is not finite and >= 0."""
    value = schedule(t)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"lr: the schedule {schedule!r} returned {describe(value)} for update {t + 1} (t={t}); expected a number"
        )
    lr = float(value)
    if not (lr >= 0.0 and math.isfinite(lr)):
        raise ValueError(
            f"lr: the schedule {schedule!r} returned {lr!r} for update {t + 1} (t={t}); expected a finite number >= 0"
        )
    return lr


@dataclass(frozen=True)
class Constant:
    """``lr`` at every step."""

    lr: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_real("lr", self.lr, minimum=0.0))

    def __call__(self, t: int) -> float:
        return self.lr

    def traced(self, xp: Any, t: Any) -> Any:
        """The value for a traced step counter ``t`` (inside a compiled program)."""
        return self.lr


@dataclass(frozen=True)
class StepDecay:
    """``lr * gamma ** (t // step_size)``: multiply by ``gamma`` every ``step_size`` updates."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_real("lr", self.lr, minimum=0.0))
        object.__setattr__(self, "step_size", check_int("step_size", self.step_size, 1))
        object.__setattr__(self, "gamma", check_real("gamma", self.gamma, minimum=0.0, maximum=1.0, open_min=True))

    def __call__(self, t: int) -> float:
        return float(self.lr * self.gamma ** (t // self.step_size))

    def traced(self, xp: Any, t: Any) -> Any:
        """The value for a traced step counter ``t`` (inside a compiled program)."""
        return self.lr * self.gamma ** (t // self.step_size)


@dataclass(frozen=True)
class Cosine:
    """Cosine annealing from ``lr`` to ``min_lr`` over ``total_steps`` updates, then ``min_lr``.

    ``min_lr + (lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2`` (Loshchilov & Hutter, 2017,
    "SGDR: Stochastic Gradient Descent with Warm Restarts", without restarts).
    """

    lr: float
    total_steps: int
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_real("lr", self.lr, minimum=0.0))
        object.__setattr__(self, "total_steps", check_int("total_steps", self.total_steps, 1))
        object.__setattr__(self, "min_lr", check_real("min_lr", self.min_lr, minimum=0.0, maximum=self.lr))

    def __call__(self, t: int) -> float:
        frac = min(t, self.total_steps) / self.total_steps
        return float(self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac)))

    def traced(self, xp: Any, t: Any) -> Any:
        """The value for a traced step counter ``t`` (inside a compiled program)."""
        frac = xp.minimum(t, self.total_steps) / self.total_steps
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + xp.cos(math.pi * frac))


@dataclass(frozen=True)
class InvScaling:
    """Inverse scaling: ``lr / (t + 1) ** power_t`` (scikit-learn's ``learning_rate="invscaling"``
    counts samples seen at each epoch's start instead of updates; its estimators do exactly that)."""

    lr: float
    power_t: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_real("lr", self.lr, minimum=0.0))
        object.__setattr__(self, "power_t", check_real("power_t", self.power_t, minimum=0.0))

    def __call__(self, t: int) -> float:
        return float(self.lr / (t + 1) ** self.power_t)

    def traced(self, xp: Any, t: Any) -> Any:
        """The value for a traced step counter ``t`` (inside a compiled program)."""
        return self.lr / (t + 1.0) ** self.power_t


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up: ``base(t) * (t + 1) / warmup_steps`` for the first ``warmup_steps`` updates.

    ``base`` is a schedule or a constant learning rate (Goyal et al., 2017, "Accurate, Large
    Minibatch SGD").
    """

    base: Schedule | float
    warmup_steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", as_schedule(self.base, "base"))
        object.__setattr__(self, "warmup_steps", check_int("warmup_steps", self.warmup_steps, 1))

    def __call__(self, t: int) -> float:
        base = self.base(t)  # type: ignore[operator]
        return float(base * min(1.0, (t + 1) / self.warmup_steps))

    def traced(self, xp: Any, t: Any) -> Any:
        """The value for a traced step counter ``t`` (inside a compiled program)."""
        base = self.base.traced(xp, t)  # type: ignore[union-attr]
        return base * xp.minimum(1.0, (t + 1.0) / self.warmup_steps)


def traced_schedule(schedule: Any) -> Callable[[Any, Any], Any] | None:
    """The function ``(xp, t) -> lr`` that evaluates ``schedule`` inside a compiled program, or
    None when it can only run on the host (a callable, :class:`ReduceOnPlateau`, or a
    :class:`Warmup` over one of those). ``t`` is the step count as a float of the network's dtype."""
    if isinstance(schedule, Warmup) and traced_schedule(schedule.base) is None:
        return None
    traced = getattr(schedule, "traced", None)
    return traced if callable(traced) else None


@dataclass
class ReduceOnPlateau:
    """Divide the learning rate by ``1 / factor`` when the monitored loss stops improving.

    After each epoch ``fit`` calls :meth:`end_epoch` with the monitored loss (the validation loss
    when there is validation data, else the training loss). When it has not improved on the best
    seen by more than ``threshold`` for more than ``patience`` epochs in a row, the learning rate is
    multiplied by ``factor`` and the count starts again; once the rate would fall below ``min_lr``
    training stops (scikit-learn's ``learning_rate="adaptive"``: ``factor=0.2``, ``min_lr=1e-6``,
    ``patience = n_iter_no_change``, ``threshold = tol``; Keras's ``ReduceLROnPlateau``).

    Parameters
    ----------
    lr : float
        Initial learning rate.
    factor : float, default 0.2
        Multiplier in (0, 1).
    patience : int, default 10
    threshold : float, default 1e-4
    min_lr : float, default 1e-6

    Notes
    -----
    Its state (the current rate, the best loss, the epochs without improvement) is saved in
    checkpoints (:meth:`state` / :meth:`load_state`), so a resumed run continues it exactly; it is
    left out of the ``repr``, which names the configuration.
    """

    lr: float
    factor: float = 0.2
    patience: int = 10
    threshold: float = 1e-4
    min_lr: float = 1e-6
    current: float = field(init=False, repr=False, compare=False)
    best: float = field(init=False, default=math.inf, repr=False, compare=False)
    bad_epochs: int = field(init=False, default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.lr = check_real("lr", self.lr, minimum=0.0)
        self.factor = check_real("factor", self.factor, minimum=0.0, maximum=1.0, open_min=True)
        self.patience = check_int("patience", self.patience, 0)
        self.threshold = check_real("threshold", self.threshold, minimum=0.0)
        self.min_lr = check_real("min_lr", self.min_lr, minimum=0.0)
        self.current = self.lr

    def __call__(self, t: int) -> float:
        return self.current

    def reset(self) -> None:
        """Back to the initial rate, no best loss, no epoch without improvement (a new network)."""
        self.current, self.best, self.bad_epochs = self.lr, math.inf, 0

    def state(self) -> dict[str, Any]:
        """The state that changes as training goes (JSON-serialisable; saved in checkpoints)."""
        return {
            "current": self.current,
            "best": None if math.isinf(self.best) else self.best,
            "bad_epochs": self.bad_epochs,
        }

    def load_state(self, state: Any) -> None:
        """Restore :meth:`state`'s output (ValueError for anything malformed)."""
        ok = isinstance(state, dict) and set(state) == {"current", "best", "bad_epochs"}
        if ok:
            current, best, bad = state["current"], state["best"], state["bad_epochs"]
            ok = (
                type(current) in (int, float)
                and math.isfinite(current)
                and current >= 0
                and (best is None or (type(best) in (int, float) and math.isfinite(best)))
                and type(bad) is int
                and bad >= 0
            )
        if not ok:
            raise ValueError(f"schedule state: expected current, best and bad_epochs, got {state!r}")
        self.current = float(state["current"])
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])

    def end_epoch(self, value: float) -> bool:
        """Record the epoch's monitored loss; True when the rate fell below ``min_lr`` (stop)."""
        if value > self.best - self.threshold:
            self.bad_epochs += 1
        else:
            self.bad_epochs = 0
        self.best = min(self.best, value)
        if self.bad_epochs > self.patience:
            self.bad_epochs = 0
            if self.current * self.factor < self.min_lr:
                return True
            self.current *= self.factor
        return False


def plateau_of(schedule: Any) -> ReduceOnPlateau | None:
    """The :class:`ReduceOnPlateau` that ``schedule`` is or warms up (its state is what ``fit``
    updates after each epoch, checkpoints and resets on a new network), else None."""
    while isinstance(schedule, Warmup):
        schedule = schedule.base
    return schedule if isinstance(schedule, ReduceOnPlateau) else None


def describe_schedule(schedule: Any) -> str:
    """A description of ``schedule`` that is the same in every process: the ``repr`` of the built-in
    schedules (their configuration), else the callable's qualified name (a function's memory address
    would differ between the process that wrote a checkpoint and the one resuming it)."""
    if type(schedule).__module__ == __name__:
        if dataclasses.is_dataclass(schedule):  # Warmup(base=...): the base described the same way
            parts = [
                f"{f.name}={describe_schedule(v) if callable(v) else repr(v)}"
                for f in dataclasses.fields(schedule)
                if f.repr
                for v in [getattr(schedule, f.name)]
            ]
            return f"{type(schedule).__name__}({', '.join(parts)})"
        return repr(schedule)
    target = schedule if hasattr(schedule, "__qualname__") else type(schedule)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(schedule).__name__)}"


def as_schedule(lr: Schedule | float, name: str = "lr") -> Schedule:
    """A schedule from a non-negative number (constant, NumPy scalars included) or a callable."""
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        return Constant(check_real(name, lr, minimum=0.0))
    if callable(lr):
        return lr
    raise TypeError(f"{name}: expected a non-negative number or a schedule, got {describe(lr)}")
