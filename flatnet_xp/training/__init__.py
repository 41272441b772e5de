"""Training, split by job: the run's description (:mod:`.run`), the loop (:mod:`.loop`), checkpoints and
resume (:mod:`.resume`), early stopping (:mod:`.stopping`) and progress bars (:mod:`.progress`)."""

from flatnet_xp.training.loop import fit
from flatnet_xp.training.run import RunSpec

__all__ = ["RunSpec", "fit"]
