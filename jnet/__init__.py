"""jnet: a functional neural-network toolkit on JAX.

Layers are pure `(init, apply)` pairs (`jnet.layers`), optimizers are pure state transitions
(`jnet.optim`), and training is a jit-compiled pure step plus a small driver (`jnet.fit`).
"""

from jnet import (
    activations,
    callbacks,
    checkpoint,
    distributed,
    errors,
    initializers,
    interop,
    layers,
    losses,
    optim,
    precision,
)
from jnet.errors import ArgumentError, ArgumentKeyError, ArgumentTypeError, DataError, Error
from jnet.export import ExportedModel, export, load_exported
from jnet.layers.summary import summary
from jnet.training import (
    EarlyStopping,
    FitResult,
    TrainingDiverged,
    TrainingInterrupted,
    data,
    evaluate,
    fit,
    make_train_step,
    predict,
)
from jnet.training.lr_find import lr_find

__version__ = "0.2.0"
__all__ = [
    "ArgumentError",
    "ArgumentKeyError",
    "ArgumentTypeError",
    "DataError",
    "EarlyStopping",
    "Error",
    "ExportedModel",
    "FitResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "activations",
    "callbacks",
    "checkpoint",
    "data",
    "distributed",
    "errors",
    "evaluate",
    "export",
    "fit",
    "initializers",
    "interop",
    "layers",
    "load_exported",
    "losses",
    "lr_find",
    "make_train_step",
    "optim",
    "precision",
    "predict",
    "summary",
]
