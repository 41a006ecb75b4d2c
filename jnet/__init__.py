"""jnet: a functional neural-network toolkit on JAX.

Layers are pure `(init, apply)` pairs (`jnet.layers`), optimizers are pure state transitions
(`jnet.optim`), and training is a jit-compiled pure step plus a small driver (`jnet.fit`).
"""

# `_xla_cpu` is imported first (it also sorts first): it may add an XLA flag, which works
# only before jax starts its CPU client (`jnet.xla_cpu_flags` says what it added).
from jnet import (
    _xla_cpu,
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

xla_cpu_flags: tuple[str, ...] = _xla_cpu.APPLIED
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
    "xla_cpu_flags",
]
