"""Seeds: fresh entropy when none is given, and the sample order of an epoch derived from it."""

from __future__ import annotations

import numpy as np

__all__ = ["epoch_order", "fresh_entropy"]


def fresh_entropy() -> int:
    """128 bits of OS entropy as an int (the shuffle seed when none is given)."""
    return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]


def epoch_order(entropy: int, rank: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of ``epoch`` on ``rank``, from the shuffle entropy alone.

    Deriving each epoch's permutation (rather than advancing one generator) makes the whole shuffle
    state a single integer, so a resumed run, in any process on any rank, draws the same orders.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(rank, epoch))).permutation(n)
