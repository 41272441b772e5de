"""flatnet_xp: multilayer perceptrons on ONE flat parameter buffer, on any Array API backend."""

from flatnet_xp.backends import BACKENDS, to_numpy
from flatnet_xp.ensemble import FlatEnsemble
from flatnet_xp.history import Callback, DivergenceError, History
from flatnet_xp.layout import Layout
from flatnet_xp.losses import LOSSES, Loss
from flatnet_xp.network import FlatMLP
from flatnet_xp.optim import SGD, Adam, AdamW, Optimizer, RMSprop
from flatnet_xp.persistence import ModelFileError
from flatnet_xp.preprocessing import Preprocessing
from flatnet_xp.schedules import Constant, Cosine, InvScaling, ReduceOnPlateau, Schedule, StepDecay, Warmup
from flatnet_xp.solvers import LBFGS

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "LBFGS",
    "LOSSES",
    "SGD",
    "Adam",
    "AdamW",
    "Callback",
    "Constant",
    "Cosine",
    "DivergenceError",
    "FlatEnsemble",
    "FlatMLP",
    "History",
    "InvScaling",
    "Layout",
    "Loss",
    "ModelFileError",
    "Optimizer",
    "Preprocessing",
    "RMSprop",
    "ReduceOnPlateau",
    "Schedule",
    "StepDecay",
    "Warmup",
    "__version__",
    "to_numpy",
]
