"""Training: batching, the pure train step, and the `fit` / `evaluate` / `predict` driver.

    result = jnet.fit(model, "adam", x, y, epochs=10, batch_size=64, key=0,
                      validation_data=(xv, yv),
                      callbacks=[jnet.callbacks.Checkpoint("runs/a", resume=True)])
    result.history.plot()

Underneath, `make_train_step` gives the pure step ``(params, state, opt_state, batch, key) ->
(params, state, opt_state, metrics)`` to jit and loop over yourself, and `jnet.data.batches`
the fixed-shape batches to feed it.

Modules: `driver` (`fit`), `setup` (argument checks and the initial trees), `options`
(`Options`, the rarely used settings), `trainer` (the epoch loop, errors that keep the run),
`loop` (compiled epochs: scan, per-step and iterable paths, populations), `data` (batching,
masks), `step` (the pure steps), `inference` (`evaluate`, `predict`), `callbacks` (the
protocol and `RunState`), `early_stopping`, `checkpointing` (`Checkpoint`), `live_plot`,
`resume` (the checkpoint schema), `deprecated` (the v0.2 keywords), `result`, `checks`,
`history`, `metrics`, `progress`.
"""

from jnet.training import data
from jnet.training.callbacks import Best, Callback, RunState
from jnet.training.checkpointing import Checkpoint
from jnet.training.data import Batch, mask_from_lengths
from jnet.training.driver import fit
from jnet.training.early_stopping import EarlyStopping
from jnet.training.history import History
from jnet.training.inference import evaluate, predict
from jnet.training.live_plot import LivePlot
from jnet.training.loop import TrainState
from jnet.training.metrics import accuracy
from jnet.training.options import Options
from jnet.training.result import FitResult, Timing, TrainingDiverged, TrainingInterrupted
from jnet.training.step import make_eval_step, make_train_step

__all__ = [
    "Batch",
    "Best",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "FitResult",
    "History",
    "LivePlot",
    "Options",
    "RunState",
    "Timing",
    "TrainState",
    "TrainingDiverged",
    "TrainingInterrupted",
    "accuracy",
    "data",
    "evaluate",
    "fit",
    "make_eval_step",
    "make_train_step",
    "mask_from_lengths",
    "predict",
]
