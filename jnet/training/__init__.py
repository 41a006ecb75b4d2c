"""Training: batching, the pure train step, and the `fit` / `evaluate` / `predict` driver.

    result = jnet.fit(model, jnet.optim.adam(1e-3), x, y, epochs=10, batch_size=64,
                      key=jax.random.key(0), validation_data=(xv, yv))
    result.history.plot()

Underneath, `make_train_step` gives the pure step ``(params, state, opt_state, batch, key) ->
(params, state, opt_state, metrics)`` to jit and loop over yourself, and `jnet.data.batches`
the fixed-shape batches to feed it.
"""

from jnet.training import data
from jnet.training.callbacks import EarlyStopping
from jnet.training.fit import FitResult, TrainingDiverged, evaluate, fit, predict
from jnet.training.history import History, LivePlot
from jnet.training.metrics import accuracy
from jnet.training.step import make_eval_step, make_train_step

__all__ = [
    "EarlyStopping",
    "FitResult",
    "History",
    "LivePlot",
    "TrainingDiverged",
    "accuracy",
    "data",
    "evaluate",
    "fit",
    "make_eval_step",
    "make_train_step",
    "predict",
]
