"""What ``fit`` was asked to do: one immutable run description, built from keywords and checked before any work."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flatnet_xp._atomic import check_output_path
from flatnet_xp._validation import check_int, check_real, describe
from flatnet_xp.distributed import check_communicator
from flatnet_xp.history import Callback
from flatnet_xp.losses import LOSSES, Loss, get_loss
from flatnet_xp.optim import Adam, Optimizer
from flatnet_xp.solvers import LBFGS

__all__ = ["RunSpec", "progress_wanted"]


def _check_callbacks(callbacks: Sequence[Callback] | Callback | None) -> tuple[Callback, ...]:
    if callbacks is None:
        return ()
    cbs = [callbacks] if callable(callbacks) else list(callbacks) if isinstance(callbacks, Sequence) else None
    if cbs is None or not all(callable(c) for c in cbs):
        raise TypeError(f"callbacks: expected a callable or a list of callables, got {describe(callbacks)}")
    return tuple(cbs)


def progress_wanted(progress: bool | None) -> bool:
    if progress is None:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return False
        import sys

        return sys.stderr.isatty() and not os.environ.get("CI")
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected True, False or None, got {describe(progress)}")
    return progress


@dataclass(frozen=True)
class RunSpec:
    """Everything ``fit`` was asked to do, checked (see :func:`flatnet_xp.training.fit` for each field).

    Build it with :meth:`build`, which checks every argument by name before any work.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: Optimizer | LBFGS | None = None
    loss: Loss = LOSSES["mse"]
    shuffle: bool | Callable[[int, int], Any] = True
    seed: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    callbacks: tuple[Callback, ...] = ()
    show_progress: bool = False
    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: int = 1
    resume: str | os.PathLike[str] | None = None
    distributed: bool = False
    initial_epoch: int = 0

    @classmethod
    def build(
        cls,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        optimizer: Optimizer | LBFGS | None = None,
        loss: str | Loss = "mse",
        shuffle: bool | Callable[[int, int], Any] = True,
        seed: int | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        callbacks: Sequence[Callback] | Callback | None = None,
        progress: bool | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        resume: str | os.PathLike[str] | None = None,
        comm: Any = None,
        initial_epoch: int = 0,
    ) -> RunSpec:
        """Check every argument (ValueError/TypeError naming it) and describe the run.

        ``optimizer=None`` becomes ``Adam(lr=1e-3)``; ``comm`` is only checked (the description
        records that the run is distributed).
        """
        epochs = check_int("epochs", epochs, 0)
        batch_size = check_int("batch_size", batch_size, 1)
        loss_fn = get_loss(loss)
        opt = Adam(lr=1e-3) if optimizer is None else optimizer
        if not isinstance(opt, Optimizer | LBFGS):
            raise TypeError(f"optimizer: expected a flatnet_xp optimizer (e.g. fx.SGD(lr=0.1)), got {describe(opt)}")
        if not isinstance(shuffle, bool) and not callable(shuffle):
            raise TypeError(f"shuffle: expected a bool or a function order(epoch, n), got {describe(shuffle)}")
        if callable(shuffle) and (checkpoint is not None or resume is not None or comm is not None):
            raise ValueError(
                "shuffle: orders from a function cannot be checkpointed or shared out; pass True and a seed"
            )
        if seed is not None:
            seed = check_int("seed", seed, 0)
        patience = None if patience is None else check_int("patience", patience, 1)
        min_delta = check_real("min_delta", min_delta, minimum=0.0)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        if checkpoint is not None:
            check_output_path(checkpoint, "checkpoint")
        if resume is not None and not isinstance(resume, str | os.PathLike):
            raise TypeError(f"resume: expected a file path (str or os.PathLike), got {describe(resume)}")
        if resume is not None and not os.path.lexists(resume):
            raise ValueError(
                f"resume: no checkpoint at {os.fspath(resume)!s} (no such file); to start a new run, leave resume out "
                "(checkpoint= writes one)"
            )
        if comm is not None:
            check_communicator(comm)
        initial_epoch = check_int("initial_epoch", initial_epoch, 0)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch: expected at most epochs={epochs}, got {initial_epoch}")
        if initial_epoch and resume is not None:
            raise ValueError("initial_epoch: resume continues from the checkpoint's epoch; pass one or the other")
        if isinstance(opt, LBFGS) and (checkpoint is not None or resume is not None or comm is not None):
            raise ValueError(
                "optimizer: L-BFGS runs full-batch in one scipy call: checkpoint, resume and comm are not supported"
            )
        return cls(
            epochs=epochs,
            batch_size=batch_size,
            optimizer=opt,
            loss=loss_fn,
            shuffle=shuffle,
            seed=seed,
            patience=patience,
            min_delta=min_delta,
            callbacks=_check_callbacks(callbacks),
            show_progress=progress_wanted(progress),
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            distributed=comm is not None,
            initial_epoch=initial_epoch,
        )

    @property
    def stochastic(self) -> Optimizer:
        """The optimizer of a mini-batch run (not L-BFGS)."""
        assert isinstance(self.optimizer, Optimizer)
        return self.optimizer

    def settings(self) -> dict[str, Any]:
        """How the steps are made (JSON-serialisable): part of a run's signature and of what the
        ranks of a data-parallel fit compare."""
        opt = self.optimizer
        assert opt is not None
        return {
            "loss": {"name": self.loss.name, "scale": self.loss.scale},
            "optimizer": {"name": opt.name, **opt.hyperparameters()},
            "batch_size": self.batch_size,
            "early_stopping": None
            if self.patience is None
            else {"patience": self.patience, "min_delta": self.min_delta},
            "shuffle": self.shuffle,
        }

    def collective_config(self, has_validation: bool) -> dict[str, Any]:
        """What every rank of a data-parallel fit must agree on (compared by ``distributed.agree``)."""
        return {
            **self.settings(),
            "epochs": self.epochs,
            "learning rates at steps 1, 2, 11, 101, 1001": self.sampled_rates(),
            "validation_data": has_validation,
            "checkpoint": self.checkpoint is not None,
            "checkpoint_every": self.checkpoint_every,
            "resume": self.resume is not None,
            "initial_epoch": self.initial_epoch,
        }

    def sampled_rates(self) -> tuple[Any, ...]:
        """A few values of the learning rate: schedules given as functions are described by their
        name only, so two ranks with different functions of the same name are told apart by these."""
        lr = getattr(self.optimizer, "lr", None)
        if lr is None:
            return ()
        values: list[Any] = []
        for t in (0, 1, 10, 100, 1000):
            try:
                values.append(float(lr(t)))
            except Exception as exc:  # the run itself will report it; here it is only compared
                values.append(f"{type(exc).__name__}")
        return tuple(values)
