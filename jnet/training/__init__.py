"""Training: batching, the pure train step, and the `fit` / `evaluate` / `predict` driver.

    result = jnet.fit(model, "adam", x, y, epochs=10, batch_size=64, key=0,
                      validation_data=(xv, yv))
    result.history.plot()

Underneath, `make_train_step` gives the pure step ``(params, state, opt_state, batch, key) ->
(params, state, opt_state, metrics)`` to jit and loop over yourself, and `jnet.data.batches`
the fixed-shape batches to feed it.

Modules: `data` (batching, masks, the prepared arrays), `step` (the pure steps and their
objective), `loop` (the epoch loop: scan, per-step and iterable paths, populations), `driver`
(`fit`), `inference` (`evaluate`, `predict`), `resume` (the checkpoint schema), `checks`
(argument checks), `callbacks` (early stopping), `history`, `metrics`, `progress`.
"""

from jnet.training import data
from jnet.training.callbacks import EarlyStopping
from jnet.training.data import Batch, mask_from_lengths
from jnet.training.driver import FitResult, Timing, TrainingDiverged, fit
from jnet.training.history import History, LivePlot
from jnet.training.inference import evaluate, predict
from jnet.training.loop import TrainState
from jnet.training.metrics import accuracy
from jnet.training.step import make_eval_step, make_train_step

__all__ = [
    "Batch",
    "EarlyStopping",
    "FitResult",
    "History",
    "LivePlot",
    "Timing",
    "TrainState",
    "TrainingDiverged",
    "accuracy",
    "data",
    "evaluate",
    "fit",
    "make_eval_step",
    "make_train_step",
    "mask_from_lengths",
    "predict",
]
