"""Learning-rate schedules: small immutable objects mapping the optimizer step count to a learning rate.

A schedule is called with ``t``, the number of updates already made (0 for the first update), and
returns a Python float. Pass one wherever an optimizer takes ``lr``. Counting steps rather than epochs
lets warm-up act within the first epoch; for an epoch-based schedule use ``steps_per_epoch =
ceil(n_samples / batch_size)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flatnet_xp._validation import check_int, check_real, describe

__all__ = ["Constant", "Cosine", "Schedule", "StepDecay", "Warmup", "as_schedule"]


@runtime_checkable
class Schedule(Protocol):
    """Anything callable as ``schedule(t) -> float`` for ``t = 0, 1, 2, ...``."""

    def __call__(self, t: int) -> float: ...


@dataclass(frozen=True)
class Constant:
    """``lr`` at every step."""

    lr: float

    def __post_init__(self) -> None:
        check_real("lr", self.lr, minimum=0.0)

    def __call__(self, t: int) -> float:
        return float(self.lr)


@dataclass(frozen=True)
class StepDecay:
    """``lr * gamma ** (t // step_size)``: multiply by ``gamma`` every ``step_size`` updates."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_real("lr", self.lr, minimum=0.0)
        check_int("step_size", self.step_size, 1)
        check_real("gamma", self.gamma, minimum=0.0, maximum=1.0, open_min=True)

    def __call__(self, t: int) -> float:
        return float(self.lr * self.gamma ** (t // self.step_size))


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
        check_real("lr", self.lr, minimum=0.0)
        check_int("total_steps", self.total_steps, 1)
        check_real("min_lr", self.min_lr, minimum=0.0, maximum=self.lr)

    def __call__(self, t: int) -> float:
        frac = min(t, self.total_steps) / self.total_steps
        return float(self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac)))


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
        check_int("warmup_steps", self.warmup_steps, 1)

    def __call__(self, t: int) -> float:
        base = self.base(t)  # type: ignore[operator]
        return float(base * min(1.0, (t + 1) / self.warmup_steps))


def as_schedule(lr: Schedule | float, name: str = "lr") -> Schedule:
    """A schedule from a non-negative number (constant) or an existing schedule."""
    if isinstance(lr, Schedule) and not isinstance(lr, int | float):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, int | float):
        raise TypeError(f"{name}: expected a non-negative number or a schedule, got {describe(lr)}")
    return Constant(check_real(name, lr, minimum=0.0))
