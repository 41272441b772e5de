"""Engines: how the steps of ``fit`` run on a parameter state (never on a ``FlatMLP``).

:mod:`.eager` steps a mutable backend batch by batch, :mod:`.compiled` runs each epoch as one
compiled program (JAX), :mod:`.lbfgs` runs full-batch L-BFGS. They share one batch plan
(:mod:`.plan`), one divergence verdict, one gradient clipping (:func:`flatnet_xp.optim.clip_factor`)
and one preparation of labels and sample weights (:mod:`flatnet_xp._data`).
"""
