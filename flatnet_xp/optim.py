"""Optimizers on the flat parameter buffer: each update is a handful of whole-buffer operations.

All state is flat arrays the length of the parameters, whatever the depth of the network. The
update of each optimizer is ONE function of flat arrays, :meth:`Optimizer.update`, that returns the
new parameters (and stores new state arrays): on NumPy, CuPy and PyTorch it runs in place through the
``out=`` shim with ONE preallocated scratch buffer, so a step allocates nothing parameter-sized; on
JAX the same function is traced into the compiled epoch (:mod:`flatnet_xp.engines.compiled`). Weight decay
(L2 or decoupled) applies to the weights ``w`` only; biases are exempt (``w`` is the first ``w_len``
entries of the buffer).

The formulas follow ``torch.optim`` exactly (the tests compare against it step by step).

Finiteness: an update only subtracts from and scales the parameters and its state, so once a value
is NaN or infinite it stays so for the rest of the epoch. ``fit`` therefore checks the parameters
and the state once per epoch (:meth:`Optimizer.all_finite`, no per-step cost) besides each step's
loss, and raises :class:`~flatnet_xp.DivergenceError` having restored the state from before the
failing step, so no update can leave non-finite parameters behind.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, ClassVar

import numpy as np

from flatnet_xp._blocks import Blocks
from flatnet_xp._validation import check_real, describe
from flatnet_xp.backends import NO_OUT, to_numpy
from flatnet_xp.params import FlatParams, OptimizerState
from flatnet_xp.schedules import Constant, Schedule, as_schedule, checked_lr, describe_schedule, plateau_of

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "as_params", "clip_factor"]


def as_params(target: Any) -> FlatParams:
    """The parameter state of ``target``: a :class:`~flatnet_xp.params.FlatParams`, or an object
    holding one as ``flat_params`` (a ``FlatMLP``)."""
    params = target if isinstance(target, FlatParams) else getattr(target, "flat_params", None)
    if not isinstance(params, FlatParams):
        raise TypeError(f"expected a FlatMLP or its FlatParams, got {describe(target)}")
    return params


def _active(value: Any) -> bool:
    """Whether a hyperparameter term applies: a nonzero number, or any array (an ensemble's
    per-member ``(E, 1)`` column, whose zero entries leave their rows exactly unchanged).

    On the per-step path a float is tested inline first (``type(v) is float and v == 0.0``): the
    checked hyperparameters are floats, and a function call there cost 3 % of a per-sample step.
    """
    return not isinstance(value, int | float) or value != 0


def clip_factor(xp: Any, sq_norm: Any, clip_norm: float) -> Any:
    """The factor that rescales a gradient of squared norm ``sq_norm`` to norm at most ``clip_norm``
    (PyTorch's ``clip_grad_norm_`` with its 1e-6 guard); one formula for every engine."""
    return xp.clip(clip_norm / (xp.sqrt(sq_norm) + 1e-6), max=1.0)


class Optimizer:
    """Base class: learning rate (or schedule), optional global gradient-norm clipping, flat state.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate, or a schedule of the update count (see :mod:`flatnet_xp.schedules`).
    clip_norm : float, optional
        Rescale the whole flat gradient to at most this L2 norm before the update
        (one reduction over the buffer; PyTorch's ``clip_grad_norm_`` with its 1e-6 guard).

    Notes
    -----
    The state an optimizer builds (``t`` and the flat buffers) belongs to the parameters it updates
    (:attr:`flatnet_xp.params.FlatParams.optimizer_state`), not to the optimizer: it is kept between
    ``fit`` calls on the same network, like a ``torch.optim`` optimizer, and an optimizer used with
    another network (or a network first trained by another optimizer) starts afresh there.
    :attr:`t` and :attr:`state` show the state on the network this optimizer last updated. A pickled
    (or deep-copied) optimizer carries that state and hands it back to that same network only (the
    network itself pickled or deep-copied, or an unpickled copy of it); any other network it updates
    starts afresh, and so does a stateful schedule (:class:`~flatnet_xp.ReduceOnPlateau`).
    One optimizer may update several networks, in parallel threads too: everything that depends on
    the network (the state, where its weights end) is looked up per network.
    """

    name: ClassVar[str] = "optimizer"
    #: Names of the persistent flat state buffers (saved in checkpoints).
    buffer_names: tuple[str, ...] = ()

    def __init__(self, lr: Schedule | float, clip_norm: float | None = None) -> None:
        self.lr = as_schedule(lr)
        self.clip_norm = None if clip_norm is None else check_real("clip_norm", clip_norm, minimum=0.0, open_min=True)
        self._last: weakref.ref[FlatParams] | None = None
        self._pending: dict[str, Any] | None = None  # state carried by a pickle, for the network it came from
        self._w_len = 0  # where the weights end, for callers outside apply (compiled programs set their own)
        self._tls = threading.local()  # the w_len of the network apply is updating, per thread

    # ------------------------------------------------------------------ state
    def hyperparameters(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters (saved in checkpoints, compared on resume)."""
        return {"lr": describe_schedule(self.lr), "clip_norm": self.clip_norm}

    def _current(self) -> OptimizerState | None:
        params = None if self._last is None else self._last()
        state = None if params is None else params.optimizer_state
        return state if state is not None and state.owner() is self else None

    @property
    def t(self) -> int:
        """Updates made on the network this optimizer last updated (0 before any)."""
        state = self._current()
        if state is not None:
            return state.t
        return 0 if self._pending is None else int(self._pending["t"])

    @property
    def state(self) -> dict[str, Any]:
        """The flat state buffers on the network this optimizer last updated, by name."""
        state = self._current()
        return {} if state is None else dict(state.buffers)

    @property
    def learning_rate(self) -> float:
        """The learning rate the next update will use."""
        return checked_lr(self.lr, self.t)

    def state_of(self, target: Any) -> OptimizerState:
        """This optimizer's state on ``target`` (a FlatMLP or FlatParams), created zeroed (or from a
        pickled state of the right size) when the parameters hold none of this optimizer's."""
        params = as_params(target)
        state = params.optimizer_state
        if state is None or state.owner() is not self:
            with params.backend.precision(params.dtype_name):
                state = params.optimizer_state = self._new_state(params)
        if self._last is None or self._last() is not params:
            self._last = weakref.ref(params)
        self._w_len = params.layout.w_len
        return state

    def _new_state(self, params: FlatParams) -> OptimizerState:
        be, n = params.backend, params.layout.n_params
        pending = self._pending
        if (
            pending is not None
            and pending.get("uid") == params.uid
            and all(v.shape == (n,) for v in pending["buffers"].values())
        ):  # back on the network a pickled (or copied) optimizer came from: continue there
            self._pending = None
            buffers = {k: be.asarray(v, dtype=params.dtype) for k, v in pending["buffers"].items()}
            t = int(pending["t"])
        else:  # another network: a fresh start, the schedule's state included
            buffers = {name: params.xp.zeros_like(params.flat) for name in self.buffer_names}
            t = 0
            plateau = plateau_of(self.lr)
            if plateau is not None:
                plateau.reset()
        blocks = Blocks(n, enabled=be.name == "numpy")
        if be.mutable:
            size = blocks.scratch_size()
            scratch = [params.xp.empty(size, dtype=params.dtype, device=be.device) for _ in range(blocks.threads)]
        else:
            scratch = [NO_OUT]
        return OptimizerState(weakref.ref(self), t, buffers, scratch, blocks, params.layout.w_len)

    def bind(self, target: Any) -> None:
        """Make sure ``target`` (a FlatMLP or FlatParams) holds this optimizer's state (allocated zeroed)."""
        self.state_of(target)

    def __getstate__(self) -> dict[str, Any]:
        """Hyperparameters, with the last network's step count and state (as NumPy)."""
        state = dict(self.__dict__)
        current = self._current()
        params = None if self._last is None else self._last()
        if current is not None and params is not None:
            state["_pending"] = {
                "t": current.t,
                "buffers": {k: np.array(to_numpy(v)) for k, v in current.buffers.items()},
                "uid": params.uid,
            }
        state["_last"] = None
        state.pop("_tls", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tls = threading.local()

    def state_buffers(self) -> dict[str, Any]:
        """The persistent state buffers by name (on the network this optimizer last updated)."""
        return self.state

    # ------------------------------------------------------------------ update
    def clip(self, xp: Any, ops: Any, g: Any) -> Any:
        """``g`` rescaled to norm at most ``clip_norm`` (unchanged without clipping)."""
        if self.clip_norm is None:
            return g
        return ops.imul(g, clip_factor(xp, xp.vecdot(g, g), self.clip_norm))

    def step(self, target: Any) -> None:
        """Apply one update to the parameters of ``target`` (a FlatMLP or FlatParams) from its flat
        gradient buffer, in place (replaced on JAX).

        Raises
        ------
        ValueError
            The learning-rate schedule returned a non-finite or negative value (before any change).
        """
        params = as_params(target)
        state = self.state_of(params)
        with params.backend.precision(params.dtype_name):
            self.apply(params, state)

    def apply(self, params: FlatParams, state: OptimizerState) -> None:
        """One update of ``params`` with ``state`` (from :meth:`state_of`): what :meth:`step` does
        after looking the state up; engines look it up once per epoch and call this every step,
        inside the network's precision scope."""
        be = params.backend
        ops, xp = be.ops, be.xp
        lr = self.lr.lr if type(self.lr) is Constant else checked_lr(self.lr, state.t)  # constants were checked
        g = self.clip(xp, ops, params.grads)
        state.t += 1
        p, buffers, scratch, t = params.flat, state.buffers, state.scratch, state.t
        blocked = state.blocks.blocked
        wd = getattr(self, "weight_decay", None)
        # Where the weights end (for weight decay) is this network's, per thread; the usual step
        # (no weight decay, one block) reads it nowhere and skips setting it.
        tls = self._tls if blocked or type(wd) is not float or wd != 0.0 else None
        if tls is not None:
            tls.w_len = state.w_len
        try:
            if not blocked:
                new = self.update(ops, 0, p, g, buffers, scratch[0], lr, t)
                if new is not p:  # updated in place on mutable backends: nothing to assign
                    params.assign(new)
                return

            def block(lo: int, hi: int, worker: int) -> None:
                self._tls.w_len = state.w_len  # the pool's threads update this network too
                views = {name: buf[lo:hi] for name, buf in buffers.items()}
                self.update(ops, lo, p[lo:hi], g[lo:hi], views, scratch[worker][: hi - lo], lr, t)

            state.blocks.run(block)
        finally:
            if tls is not None:
                tls.w_len = None

    def all_finite(self, target: Any) -> bool:
        """True when the parameters of ``target`` and every state buffer hold only finite values."""
        return as_params(target).all_finite()

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        """The update of the slice ``[lo, lo + len(p))`` of the flat buffers; returns the new ``p``.

        ``g`` and ``s`` (state buffers by name; new arrays are stored back into ``s``) are the same
        slice, ``tmp`` scratch of that length (:data:`~flatnet_xp.backends.NO_OUT` on JAX), ``lr`` the
        learning rate and ``t`` the 1-based update count (Python numbers, or traced scalars on JAX).
        The buffers may also be ``(E, n)`` stacks (an ensemble: the last axis is the parameters) with
        ``lr`` and hyperparameters as ``(E, 1)`` columns.
        """
        raise NotImplementedError

    def _weights(self, lo: int, size: int) -> int:
        """How many leading entries of the slice starting at ``lo`` are weights (not biases)."""
        w_len = getattr(self._tls, "w_len", None)
        return max(0, min(size, (self._w_len if w_len is None else w_len) - lo))

    def _add_l2(self, ops: Any, lo: int, p: Any, g: Any, tmp: Any, weight_decay: float) -> Any:
        """``g_w += weight_decay * w`` on the weights only (coupled L2, as torch's weight_decay)."""
        if type(weight_decay) is float and weight_decay == 0.0:  # the usual case, without a call
            return g
        n = self._weights(lo, p.shape[-1]) if _active(weight_decay) else 0
        if n:
            g = ops.slice_add(g, 0, n, ops.multiply(p[..., :n], weight_decay, tmp[..., :n]))
        return g

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``b <- mu b + g`` (``b`` starts at 0, so ``b = g`` at the first step), then
    ``p <- p - lr (g + mu b)`` with Nesterov or ``p <- p - lr b`` without; Sutskever et al., 2013,
    "On the importance of initialization and momentum in deep learning". ``weight_decay`` adds
    ``wd * w`` to the weights' gradient.
    """

    name = "sgd"

    def __init__(
        self,
        lr: Schedule | float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.momentum = check_real("momentum", momentum, minimum=0.0, maximum=1.0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov: expected a bool, got {describe(nesterov)}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        self.nesterov = nesterov
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
        self.buffer_names = ("momentum_buffer",) if self.momentum else ()

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._add_l2(ops, lo, p, g, tmp, self.weight_decay)
        mu = self.momentum
        if type(mu) is not float or mu != 0.0:
            buf = s["momentum_buffer"] = ops.iadd(ops.imul(s["momentum_buffer"], mu), g)
            g = ops.iadd(ops.multiply(buf, mu, tmp), g) if self.nesterov else buf
        return ops.isub(p, ops.multiply(g, lr, tmp))


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization").

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``.
    ``weight_decay`` is coupled L2 on the weights (for decoupled decay use :class:`AdamW`).
    """

    name = "adam"
    buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: Schedule | float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair of numbers in [0, 1), got {describe(betas)}")
        self.betas = (
            check_real("betas[0]", betas[0], minimum=0.0, maximum=1.0 - 1e-12),
            check_real("betas[1]", betas[1], minimum=0.0, maximum=1.0 - 1e-12),
        )
        self.eps = check_real("eps", eps, minimum=0.0, open_min=True)
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._add_l2(ops, lo, p, g, tmp, self.weight_decay)
        return self._adam(ops, p, g, s, tmp, lr, t)

    def _adam(self, ops: Any, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        b1, b2 = self.betas
        m = s["exp_avg"] = ops.iadd(ops.imul(s["exp_avg"], b1), ops.multiply(g, 1.0 - b1, tmp))
        sq = ops.imul(ops.multiply(g, g, tmp), 1.0 - b2)
        v = s["exp_avg_sq"] = ops.iadd(ops.imul(s["exp_avg_sq"], b2), sq)
        denom = ops.iadd(ops.imul(ops.sqrt(v, tmp), 1.0 / (1.0 - b2**t) ** 0.5), self.eps)
        upd = ops.imul(ops.divide(m, denom, tmp), lr / (1.0 - b1**t))
        return ops.isub(p, upd)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay on the weights only (biases exempt).

    ``w <- w (1 - lr wd)`` then the Adam update (Loshchilov & Hutter, 2019, "Decoupled Weight Decay
    Regularization").
    """

    name = "adamw"

    def __init__(
        self,
        lr: Schedule | float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, clip_norm)

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        n = self._weights(lo, p.shape[-1]) if _active(self.weight_decay) else 0
        if n:
            p = ops.slice_mul(p, 0, n, 1.0 - lr * self.weight_decay)
        return self._adam(ops, p, g, s, tmp, lr, t)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012, Lecture 6e of "Neural Networks for Machine Learning").

    ``v <- a v + (1-a) g^2``; ``p <- p - lr g / (sqrt(v) + eps)`` (``centered`` subtracts the squared
    running mean of ``g`` inside the root; ``momentum`` accumulates the step as torch does).
    """

    name = "rmsprop"

    def __init__(
        self,
        lr: Schedule | float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0)
        self.eps = check_real("eps", eps, minimum=0.0, open_min=True)
        self.momentum = check_real("momentum", momentum, minimum=0.0, maximum=1.0)
        if not isinstance(centered, bool):
            raise TypeError(f"centered: expected a bool, got {describe(centered)}")
        self.centered = centered
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
        self.buffer_names = (
            ("square_avg",) + (("grad_avg",) if centered else ()) + (("momentum_buffer",) if self.momentum else ())
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "centered": self.centered,
            "weight_decay": self.weight_decay,
        }

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._add_l2(ops, lo, p, g, tmp, self.weight_decay)
        a = self.alpha
        sq = ops.imul(ops.multiply(g, g, tmp), 1.0 - a)
        v = s["square_avg"] = ops.iadd(ops.imul(s["square_avg"], a), sq)
        if self.centered:
            ga = s["grad_avg"] = ops.iadd(ops.imul(s["grad_avg"], a), ops.multiply(g, 1.0 - a, tmp))
            var = ops.subtract(v, ops.multiply(ga, ga, tmp), tmp)
            denom = ops.sqrt(var, tmp)
        else:
            denom = ops.sqrt(v, tmp)
        step = ops.divide(g, ops.iadd(denom, self.eps), tmp)
        if _active(self.momentum):
            buf = s["momentum_buffer"] = ops.iadd(ops.imul(s["momentum_buffer"], self.momentum), step)
            step = ops.multiply(buf, lr, tmp)
        else:
            step = ops.imul(step, lr)
        return ops.isub(p, step)


#: Optimizer classes by name (CLI, checkpoints, scikit-learn estimators).
OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adam, AdamW, RMSprop)}
