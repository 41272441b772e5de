"""One optimizer for E members: hyperparameters that differ become ``(E, 1)`` columns.

Every optimizer's :meth:`~flatnet_xp.optim.Optimizer.update` is whole-buffer arithmetic, so it runs
unchanged on the ``(E, n_params)`` buffers with a column in place of a number: member ``i``'s row
sees exactly its own hyperparameter. Values all members share stay Python numbers (the very
arithmetic of a single network's update, bit for bit). A member whose momentum or weight decay is
0 while another's is not gets a 0 entry, which leaves its row exactly as the plain update would.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp._validation import describe
from flatnet_xp.optim import Optimizer
from flatnet_xp.schedules import Constant, checked_lr, plateau_of

__all__ = ["MemberOptimizers"]

#: Hyperparameters that may differ between members, by optimizer attribute.
_NUMERIC = ("momentum", "weight_decay", "eps", "alpha")
#: Hyperparameters every member must share (they change which formula runs).
_SHARED = ("nesterov", "centered")


@dataclass
class MemberOptimizers:
    """The members' optimizers merged into one update over ``(E, n_params)`` buffers.

    Attributes
    ----------
    members : tuple of Optimizer
        One per member (the same object repeated when one optimizer was given).
    merged : Optimizer
        A copy of the first whose differing hyperparameters are ``(E, 1)`` host columns.
    buffer_names : tuple of str
        The state buffers (the union over members).
    """

    members: tuple[Optimizer, ...]
    merged: Optimizer
    buffer_names: tuple[str, ...]

    @classmethod
    def build(cls, optimizer: Any, n_models: int) -> MemberOptimizers:
        """Check ``optimizer`` (one Optimizer, or a sequence of ``n_models`` of one class) and merge."""
        if optimizer is None:
            from flatnet_xp.optim import Adam

            optimizer = Adam(lr=1e-3)
        if isinstance(optimizer, Optimizer):
            members: tuple[Optimizer, ...] = (optimizer,) * n_models
        elif isinstance(optimizer, Sequence) and not isinstance(optimizer, str):
            members = tuple(optimizer)
            if len(members) != n_models or not all(isinstance(o, Optimizer) for o in members):
                raise ValueError(
                    f"optimizer: expected one flatnet_xp optimizer or a list of {n_models} (one per member), "
                    f"got {describe(optimizer)}"
                )
            kinds = {type(o) for o in members}
            if len(kinds) != 1:
                raise ValueError(
                    f"optimizer: every member's optimizer must be of one class, got {sorted(k.__name__ for k in kinds)}"
                )
        else:
            raise TypeError(
                f"optimizer: expected a flatnet_xp optimizer (e.g. fx.SGD(lr=0.1)) or a list of {n_models}, "
                f"got {describe(optimizer)}"
            )
        first = members[0]
        for o in members:
            if plateau_of(o.lr) is not None:
                raise ValueError(f"optimizer: plateau schedules are not supported for ensembles, got {o!r}")
        for name in _SHARED:
            values = {getattr(o, name, None) for o in members}
            if len(values) > 1:
                raise ValueError(f"optimizer: every member must share {name}, got {sorted(map(repr, values))}")
        merged = copy.copy(first)
        merged._last = None
        merged._pending = None
        for name in _NUMERIC:
            if hasattr(first, name):
                setattr(merged, name, _column([getattr(o, name) for o in members]))
        if hasattr(first, "betas"):
            merged.betas = tuple(_column([o.betas[j] for o in members]) for j in range(2))  # type: ignore[attr-defined]
        names: list[str] = []
        for o in members:
            names += [b for b in o.buffer_names if b not in names]
        order = {"square_avg": 0, "grad_avg": 1, "momentum_buffer": 2, "exp_avg": 0, "exp_avg_sq": 1}
        buffer_names = tuple(sorted(names, key=lambda b: order.get(b, 9)))
        merged.buffer_names = buffer_names
        return cls(members, merged, buffer_names)

    def key(self) -> tuple[weakref.ref[Optimizer], ...]:
        """Identity of the members' optimizers: the state is kept between fits with the same ones
        (weak references: equal while the same objects are alive, never equal to new ones)."""
        return tuple(weakref.ref(o) for o in self.members)

    def constant_lr(self) -> Any:
        """The learning rate (a number, or an ``(E, 1)`` host column) when every schedule is constant, else None."""
        if not all(type(o.lr) is Constant for o in self.members):
            return None
        return _column([o.lr.lr for o in self.members])  # type: ignore[attr-defined]

    def lr_at(self, t: int) -> Any:
        """The members' learning rates at update count ``t`` (checked; a number or an ``(E, 1)`` column)."""
        return _column([checked_lr(o.lr, t) for o in self.members])

    def clip_norms(self) -> Any:
        """None when no member clips, else a number or ``(E, 1)`` column (inf: no clipping)."""
        norms = [o.clip_norm for o in self.members]
        if all(c is None for c in norms):
            return None
        return _column([np.inf if c is None else c for c in norms])


def _column(values: list[Any]) -> Any:
    """The one shared value as a Python float, or the values as an ``(E, 1)`` float64 NumPy column."""
    first = values[0]
    if all(v == first for v in values):
        return first
    return np.asarray(values, dtype=np.float64)[:, None]


def to_backend(value: Any, backend: Any, dtype: Any) -> Any:
    """A host column as a backend array of ``dtype`` (numbers stay numbers)."""
    if isinstance(value, np.ndarray):
        return backend.asarray(value, dtype=dtype)
    return value


def placed(merged: Optimizer, backend: Any, dtype: Any) -> Optimizer:
    """A copy of ``merged`` whose column hyperparameters are backend arrays of ``dtype``."""
    out = copy.copy(merged)
    for name in _NUMERIC:
        if hasattr(out, name):
            setattr(out, name, to_backend(getattr(out, name), backend, dtype))
    if hasattr(out, "betas"):
        out.betas = tuple(to_backend(b, backend, dtype) for b in out.betas)
    return out
