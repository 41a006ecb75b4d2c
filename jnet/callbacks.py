"""Callbacks of `jnet.fit`: objects called at the start, after each epoch and at the end.

    result = jnet.fit(model, "adam", x, y, epochs=20, key=0, validation_data=(xv, yv),
                      callbacks=[jnet.callbacks.EarlyStopping(patience=3),
                                 jnet.callbacks.Checkpoint("runs/a", every=1, keep=3),
                                 jnet.callbacks.LivePlot("history.png")])

Write your own by subclassing `Callback` and overriding ``on_epoch_end(run)`` (and, if
needed, ``on_train_begin`` / ``on_train_end``); `RunState` is what each hook sees. A plain
function ``cb(epoch, logs, history) -> bool`` works too (True stops training).
"""

from jnet.training.callbacks import Best, Callback, RunState
from jnet.training.checkpointing import Checkpoint
from jnet.training.early_stopping import EarlyStopping
from jnet.training.live_plot import LivePlot

__all__ = ["Best", "Callback", "Checkpoint", "EarlyStopping", "LivePlot", "RunState"]
