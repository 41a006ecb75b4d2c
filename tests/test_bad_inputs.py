"""Every bad input across the public API is a clear `jnet.Error`, raised before any work.

One table row per bad input: ``(id, thunk, expected class, regex)``. Each case checks that the
error is the expected `jnet.Error` subclass (and so keeps its built-in base, `ValueError` /
`TypeError`), that its message matches the regex (which names the offending argument) and,
for the training entry points, that no training step ran before it was raised.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
import jnet.layers as L
from jnet import activations, checkpoint, distributed, losses, optim, precision
from jnet.checkpoint import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError
from jnet.errors import ArgumentError, ArgumentTypeError, DataError, Error
from jnet.layers import LayerError
from jnet.optim import OptimizerError

K = jax.random.key(0)
X3 = jnp.ones((2, 3), jnp.float32)          # (N, F) with F = 3
SEQ = jnp.ones((2, 5, 8), jnp.float32)      # (N, T, E) with T = 5, E = 8
IMG = jnp.ones((2, 6, 6, 2), jnp.float32)   # (N, H, W, C)
PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}

# Filled per test by the `tmp` fixture: checkpoint cases write under it.
TMP: dict = {}
# Training steps executed so far (a host callback inside the probe layer's apply).
STEPS = {"ran": 0}


def _initialised(layer, in_shape):
    """(params, state) of `layer` for `in_shape`."""
    _, params, state = layer.init(K, in_shape)
    return params, state


def _apply(layer, in_shape, x, *, params=None, state=None, **kwargs):
    """`layer.apply` with its own params / state for `in_shape` unless others are given."""
    own_params, own_state = _initialised(layer, in_shape)
    return layer.apply(own_params if params is None else params,
                       own_state if state is None else state, x, **kwargs)


def _probe() -> L.Layer:
    """An identity layer that counts the training steps that really execute (not traces)."""

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        jax.debug.callback(lambda: STEPS.__setitem__("ran", STEPS["ran"] + 1))
        return x, state

    return L.Layer(lambda key, in_shape: (in_shape, {}, {}), apply_fn, kind="Probe")


def _classifier():
    return L.serial(L.Input((3,)), _probe(), L.Dense(2), L.ClassificationOutput())


def _fit(**overrides):
    """`jnet.fit` on a tiny classifier with one thing changed."""
    args = {"model": _classifier(), "optimizer": optim.sgd(0.1), "x": np.ones((4, 3), np.float32),
            "y": np.array([0, 1, 0, 1]), "epochs": 1, "batch_size": 2, "key": K}
    args.update(overrides)
    return jnet.fit(args.pop("model"), args.pop("optimizer"), args.pop("x"), args.pop("y"),
                    **args)


def _saved(tree=None) -> str:
    """A checkpoint of `tree` (default: PARAMS) under the test's directory."""
    path = str(TMP["dir"] / "ok.safetensors")
    checkpoint.save(path, PARAMS if tree is None else tree)
    return path


def _text_file() -> str:
    path = TMP["dir"] / "notes.txt"
    path.write_text("not a checkpoint, just some text that is long enough to have a header")
    return str(path)


def _width(units):
    return L.serial(L.Dense(units, name="head"))


SEQ_MODEL = L.serial(L.Embedding(10, 4), L.LSTM(3, return_sequences=True))

# (id, thunk, expected class, regex naming the argument[, marks])
CASES = [
    # ---- layer constructors
    ("dense_units_zero", lambda: L.Dense(0), LayerError, "units"),
    ("dense_units_str", lambda: L.Dense("8"), LayerError, "units"),
    ("dense_units_float", lambda: L.Dense(8.0), LayerError, "units"),
    ("dense_units_bool", lambda: L.Dense(True), LayerError, "units"),
    ("dense_w_init_unknown", lambda: L.Dense(4, w_init="glorot_sideways"), Error, "w_init"),
    ("conv_filters_float", lambda: L.Conv2D(16.0, 3), LayerError, "filters"),
    ("conv_kernel_zero", lambda: L.Conv2D(4, 0), LayerError, "kernel_size"),
    ("conv_padding_unknown", lambda: L.Conv2D(4, 3, padding="full"), LayerError, "padding"),
    ("conv_strides_negative", lambda: L.Conv2D(4, 3, strides=-1), LayerError, "strides"),
    ("dropout_rate_above_one", lambda: L.Dropout(1.5), LayerError, "rate"),
    ("dropout_rate_one", lambda: L.Dropout(1.0), LayerError, "rate"),
    ("dropout_rate_str", lambda: L.Dropout("0.5"), LayerError, "rate"),
    ("dropout_rate_nan", lambda: L.Dropout(math.nan), LayerError, "rate"),
    ("maxpool_window_zero", lambda: L.MaxPool2D(0), LayerError, "window"),
    ("avgpool_strides_zero", lambda: L.AvgPool2D(2, strides=0), LayerError, "strides"),
    ("lstm_hidden_negative", lambda: L.LSTM(-1), LayerError, "hidden"),
    ("gru_hidden_float", lambda: L.GRU(4.0), LayerError, "hidden"),
    ("embedding_zero_rows", lambda: L.Embedding(0, 4), LayerError, "num_embeddings"),
    ("embedding_features_str", lambda: L.Embedding(10, "4"), LayerError, "features"),
    ("mha_heads_zero", lambda: L.MultiHeadAttention(0), LayerError, "num_heads"),
    ("mha_dropout_one", lambda: L.MultiHeadAttention(2, dropout=1.0), LayerError, "dropout"),
    ("mha_heads_not_dividing_e", lambda: L.MultiHeadAttention(3).init(K, (5, 8)), LayerError,
     "num_heads"),
    ("batchnorm_momentum", lambda: L.BatchNorm(momentum=1.5), LayerError, "momentum"),
    ("batchnorm_eps_negative", lambda: L.BatchNorm(eps=-1.0), LayerError, "eps"),
    ("input_zero_size", lambda: L.Input((0, 3)), LayerError, "shape"),
    ("input_shape_str", lambda: L.Input("28"), LayerError, "shape"),
    ("input_shape_float", lambda: L.Input((28.0, 1)), LayerError, "shape"),
    ("reshape_two_inferred", lambda: L.Reshape((-1, -1)), LayerError, "shape"),
    ("reshape_size_mismatch", lambda: L.Reshape((7,)).init(K, (2, 3)), LayerError, "shape"),
    ("softmax_axis_out_of_range", lambda: L.Softmax(axis=3).init(K, (4,)), LayerError, "axis"),
    ("leaky_relu_slope_str", lambda: L.LeakyReLU("0.1"), LayerError, "negative_slope"),
    ("elu_alpha_none", lambda: L.ELU(None), LayerError, "alpha"),
    ("swish_beta_list", lambda: L.Swish([1.0]), LayerError, "beta"),
    ("linear_a_str", lambda: L.Linear("2"), LayerError, "a"),
    ("prelu_alpha_init_str", lambda: L.PReLU("0.25"), LayerError, "alpha_init"),
    ("prelu_shared_axes_str", lambda: L.PReLU(shared_axes="some"), LayerError, "shared_axes"),
    ("prelu_shared_axes_range", lambda: L.PReLU(shared_axes=(5,)).init(K, (4, 3)), LayerError,
     "shared_axes"),
    ("activation_unknown_name", lambda: L.Activation("relux"), LayerError, "fn_or_name"),
    ("activation_changes_shape", lambda: L.Activation(jnp.sum).init(K, (3,)), LayerError,
     "shape"),
    ("binary_step_flag_str", lambda: L.BinaryStep("yes"), LayerError, "straight_through"),
    ("fanout_zero", lambda: L.FanOut(0), LayerError, "num"),
    ("fanout_float", lambda: L.FanOut(2.0), LayerError, "num"),
    ("faninconcat_axis_range", lambda: L.serial(L.FanOut(2), L.FanInConcat(axis=5)).init(K, (3,)),
     LayerError, "axis"),
    ("faninsum_single_input", lambda: L.FanInSum().init(K, (3,)), LayerError, "tuple"),
    ("faninsum_shapes_differ", lambda: L.serial(L.FanOut(2), L.parallel(L.Dense(3), L.Dense(4)),
                                                L.FanInSum()).init(K, (2,)), LayerError,
     "one shape"),
    ("layer_name_int", lambda: L.Dense(3, name=3), LayerError, "name"),
    ("layer_name_slash", lambda: L.ReLU(name="a/b"), LayerError, "name"),
    # ---- init
    ("init_no_shape", lambda: L.Dense(3).init(K), LayerError, "in_shape|shape"),
    ("init_int_key", lambda: L.Dense(3).init(0, (3,)), LayerError, "key"),
    ("init_shape_str", lambda: L.Dense(3).init(K, "3"), LayerError, "in_shape"),
    ("init_negative_size", lambda: L.Dense(3).init(K, (-3,)), LayerError, "in_shape"),
    ("init_shape_vs_input", lambda: L.serial(L.Input((4,)), L.Dense(3)).init(K, (5,)),
     LayerError, "in_shape"),
    ("init_conv_rank", lambda: L.Conv2D(4, 3).init(K, (8, 8)), LayerError, "rank"),
    ("init_lstm_rank", lambda: L.LSTM(4).init(K, (8,)), LayerError, "rank"),
    ("init_classification_one_class", lambda: L.ClassificationOutput().init(K, (1,)),
     LayerError, "C >= 2"),
    ("init_residual_shape_change", lambda: L.residual(L.Dense(4)).init(K, (3,)), LayerError,
     "projection"),
    ("init_parallel_one_shape", lambda: L.parallel(L.Dense(2), L.Dense(2)).init(K, (3,)),
     LayerError, "FanOut"),
    # ---- apply: inputs
    ("apply_dense_int_input", lambda: _apply(L.Dense(2), (3,), X3.astype(jnp.int32)),
     LayerError, "floating-point"),
    ("apply_dense_wrong_features", lambda: _apply(L.Dense(2), (3,), jnp.ones((2, 4))),
     LayerError, "3 features"),
    ("apply_conv_wrong_rank", lambda: _apply(L.Conv2D(2, 3), (6, 6, 2), IMG[0]), LayerError,
     "rank 4"),
    ("apply_input_wrong_shape", lambda: _apply(L.Input((3,)), (3,), jnp.ones((2, 4))),
     LayerError, r"\(N, 3\)"),
    ("apply_input_tuple", lambda: _apply(L.Input((3,)), (3,), (X3, X3)), LayerError, "mask"),
    ("apply_embedding_float_ids", lambda: _apply(L.Embedding(10, 4), (5,), jnp.ones((2, 5))),
     LayerError, "integer ids"),
    ("apply_embedding_id_range", lambda: _apply(L.Embedding(10, 4), (5,),
                                                jnp.full((2, 5), 10)), LayerError,
     "num_embeddings"),
    ("apply_mha_int_input", lambda: _apply(L.MultiHeadAttention(2), (5, 8),
                                           SEQ.astype(jnp.int32)), LayerError, "floating"),
    ("apply_parallel_not_tuple", lambda: _apply(L.parallel(L.Dense(2), L.Dense(2)),
                                                ((3,), (3,)), X3), LayerError, "tuple"),
    ("apply_dropout_no_key", lambda: _apply(L.Dropout(0.5), (3,), X3, train=True), LayerError,
     "key"),
    ("apply_train_str", lambda: _apply(L.Dense(2), (3,), X3, train="yes"), LayerError, "train"),
    ("apply_unknown_side_input", lambda: _apply(L.Dense(2), (3,), X3, lengths=3), LayerError,
     "lengths"),
    ("apply_serial_unknown_side_input", lambda: _apply(L.serial(L.Dense(2)), (3,), X3,
                                                       initial_state=X3), LayerError,
     "initial_state"),
    # ---- apply: masks
    ("mask_int_dtype", lambda: _apply(L.MultiHeadAttention(2), (5, 8), SEQ,
                                      mask=jnp.ones((2, 5), jnp.int32)), LayerError, "mask"),
    ("mask_wrong_shape", lambda: _apply(L.MultiHeadAttention(2), (5, 8), SEQ,
                                        mask=jnp.ones((2, 4), bool)), LayerError, "mask"),
    ("mask_through_serial", lambda: _apply(SEQ_MODEL, (5,), jnp.zeros((2, 5), jnp.int32),
                                           mask=jnp.ones((5, 2), bool)), LayerError,
     "lstm_1.*mask"),
    # ---- apply: params / state of another model
    ("params_missing_leaf", lambda: _apply(L.Dense(2), (3,), X3, params={"w": PARAMS["w"]}),
     LayerError, r"lack \['b'\]"),
    ("params_extra_leaf", lambda: _apply(L.Dense(2), (3,), X3,
                                         params={**PARAMS, "gamma": jnp.ones(2)}),
     LayerError, "unexpected.*gamma"),
    ("params_other_width", lambda: _apply(_width(20), (3,), X3,
                                          params=_initialised(_width(10), (3,))[0]),
     LayerError, r"head.*params\['w'\] has shape \(3, 10\), expected \(3, 20\)"),
    ("params_transposed", lambda: _apply(L.Dense(2), (3,), X3, params={
        "w": jnp.ones((2, 3)), "b": jnp.zeros(2)}), LayerError, "params"),
    ("params_not_a_dict", lambda: _apply(L.serial(L.Dense(2)), (3,), X3, params=[PARAMS]),
     LayerError, "params"),
    ("params_child_missing", lambda: _apply(L.serial(L.Dense(2), L.Dense(2)), (3,), X3,
                                            params={"dense_0": PARAMS}), LayerError,
     "missing"),
    ("params_residual_missing", lambda: _apply(L.residual(L.Dense(3)), (3,), X3, params={}),
     LayerError, "params"),
    ("params_embedding_table", lambda: _apply(L.Embedding(10, 4), (5,),
                                              jnp.zeros((2, 5), jnp.int32),
                                              params={"embedding": jnp.ones((10, 8))}),
     LayerError, "embedding"),
    ("params_lstm_other_hidden", lambda: _apply(L.LSTM(4), (5, 8), SEQ,
                                                params=_initialised(L.LSTM(3), (5, 8))[0]),
     LayerError, "params"),
    ("state_of_other_model", lambda: _apply(L.BatchNorm(), (3,), X3,
                                            state=_initialised(L.BatchNorm(), (4,))[1]),
     LayerError, "state"),
    ("prelu_alpha_other_shape", lambda: _apply(L.PReLU(), (3,), X3,
                                               params={"alpha": jnp.ones(4)}), LayerError,
     "alpha"),
    # ---- combinators
    ("serial_empty", lambda: L.serial(), LayerError, "at least one"),
    ("serial_uncalled_constructor", lambda: L.serial(L.Dense(2), L.ReLU), LayerError,
     r"argument 1.*L\.ReLU\(\)"),
    ("serial_string", lambda: L.serial("relu"), LayerError, "argument 0"),
    ("serial_duplicate_names", lambda: L.serial(L.Dense(3, name="a"), L.Dense(3, name="a")),
     LayerError, "'a'"),
    ("parallel_non_layer", lambda: L.parallel(L.Dense(2), None), LayerError, "argument 1"),
    ("residual_non_layer", lambda: L.residual("dense"), LayerError, "argument 0"),
    ("map_layers_non_layer", lambda: L.map_layers(lambda layer: None, "model"),
     ArgumentTypeError, "layer"),
    ("map_layers_fn_not_callable", lambda: L.map_layers("relu", L.serial(L.Dense(2))),
     ArgumentTypeError, "fn"),
    ("map_layers_fn_returns_junk", lambda: L.map_layers(lambda layer: True, L.Dense(2)),
     ArgumentTypeError, "fn must return"),
    ("count_params_of_layer", lambda: L.count_params(L.Dense(2)), ArgumentTypeError, "tree"),
    ("with_children_count", lambda: L.serial(L.Dense(2)).with_children([]), LayerError,
     "children"),
    # ---- summary / mixed precision
    ("summary_not_a_layer", lambda: jnet.summary("model"), ArgumentTypeError, "Layer"),
    ("summary_no_shape", lambda: jnet.summary(L.serial(L.Dense(2))), ArgumentError,
     "input_shape"),
    ("summary_shape_str", lambda: jnet.summary(L.serial(L.Dense(2)), "3"), Error,
     "input_shape"),
    ("mixed_not_a_layer", lambda: precision.mixed(lambda x: x), ArgumentTypeError, "Layer"),
    ("mixed_float16", lambda: precision.mixed(L.Dense(2), jnp.float16), ArgumentError,
     "compute_dtype"),
    ("mixed_dtype_name_unknown", lambda: precision.mixed(L.Dense(2), "bfloat17"), ArgumentError,
     "compute_dtype"),
    ("mixed_output_dtype_int", lambda: precision.mixed(L.Dense(2), output_dtype=jnp.int8),
     ArgumentError, "output_dtype"),
    ("mixed_keep_float32_bool", lambda: precision.mixed(L.Dense(2), keep_float32=True),
     ArgumentTypeError, "keep_float32"),
    # ---- losses
    ("mse_shape_mismatch", lambda: losses.mse(jnp.ones((4, 1)), jnp.ones(4)), DataError,
     "target"),
    ("mse_reduction_unknown", lambda: losses.mse(jnp.ones(3), jnp.ones(3), reduction="avg"),
     ArgumentError, "reduction"),
    ("mae_where_wrong_shape", lambda: losses.mae(jnp.ones((4, 2)), jnp.ones((4, 2)),
                                                 where=jnp.ones(3, bool)), ArgumentError,
     "where"),
    ("mse_where_float", lambda: losses.mse(jnp.ones(4), jnp.ones(4), where=jnp.ones(4)),
     ArgumentError, "where"),
    ("mse_pred_none", lambda: losses.mse(None, None), DataError, "pred"),
    ("huber_delta_zero", lambda: losses.huber(jnp.ones(3), jnp.ones(3), delta=0.0),
     ArgumentError, "delta"),
    ("huber_delta_str", lambda: losses.huber(jnp.ones(3), jnp.ones(3), delta="1"),
     ArgumentError, "delta"),
    ("huber_delta_nan", lambda: losses.huber(jnp.ones(3), jnp.ones(3), delta=math.nan),
     ArgumentError, "delta"),
    ("xent_int_logits", lambda: losses.softmax_cross_entropy(jnp.ones((2, 3), jnp.int32),
                                                             jnp.array([0, 1])), DataError,
     "logits"),
    ("xent_float_labels", lambda: losses.softmax_cross_entropy(jnp.ones((2, 3)),
                                                               jnp.array([0.0, 1.0])),
     DataError, "labels"),
    ("xent_label_out_of_range", lambda: losses.softmax_cross_entropy(jnp.ones((2, 3)),
                                                                     jnp.array([0, 3])),
     DataError, "labels"),
    ("xent_reduction_none_value", lambda: losses.softmax_cross_entropy(
        jnp.ones((2, 3)), jnp.array([0, 1]), reduction=None), ArgumentError, "reduction"),
    ("bce_label_shape", lambda: losses.sigmoid_binary_cross_entropy(jnp.ones((4, 1)),
                                                                    jnp.ones(4)), DataError,
     "labels"),
    # ---- activations
    ("activations_get_unknown", lambda: activations.get("relux"), ArgumentError, "relux"),
    ("activations_get_number", lambda: activations.get(3), ArgumentTypeError, "name"),
    ("activations_softmax_axis", lambda: activations.softmax(jnp.ones((2, 3)), axis=2),
     ArgumentError, "axis"),
    ("log_softmax_axis_out_of_range", lambda: activations.log_softmax(jnp.ones(3), axis=-2),
     ArgumentError, "axis"),
    # ---- optimizers and schedules (beyond tests/test_optim_errors.py)
    ("sgd_lr_bool", lambda: optim.sgd(True), OptimizerError, "learning_rate"),
    ("adam_amsgrad_str", lambda: optim.adam(amsgrad="yes"), OptimizerError, "amsgrad"),
    ("chain_nothing", lambda: optim.chain(), OptimizerError, "parts"),
    ("init_params_str", lambda: optim.adam().init("params"), OptimizerError, "params"),
    ("get_empty_name", lambda: optim.get(""), OptimizerError, "name_or_optimizer"),
    ("constant_schedule_negative", lambda: optim.constant_schedule(-1.0), OptimizerError,
     "value"),
    ("piecewise_boundary_float", lambda: optim.piecewise_constant_schedule(0.1, {2.5: 0.5}),
     OptimizerError, "boundar"),
    ("piecewise_not_a_dict", lambda: optim.piecewise_constant_schedule(0.1, [5]),
     OptimizerError, "boundaries"),
    ("exponential_rate_negative", lambda: optim.exponential_decay(0.1, -0.5, 10),
     OptimizerError, "decay_rate"),
    ("exponential_steps_zero", lambda: optim.exponential_decay(0.1, 0.9, 0), OptimizerError,
     "transition_steps"),
    ("step_decay_gamma_negative", lambda: optim.step_decay_schedule(0.1, 10, gamma=-1.0),
     OptimizerError, "gamma"),
    ("cosine_steps_zero", lambda: optim.cosine_decay_schedule(0.1, 0), OptimizerError,
     "decay_steps"),
    ("linear_end_negative", lambda: optim.linear_schedule(0.1, -1.0, 10), OptimizerError,
     "end_value"),
    ("warmup_steps_negative", lambda: optim.warmup_cosine_decay_schedule(0.0, 0.1, -1, 10),
     OptimizerError, "warmup_steps"),
    ("clip_value_str", lambda: optim.clip_by_value("1"), OptimizerError, "max_value"),
    # ---- checkpoints
    ("save_to_directory", lambda: checkpoint.save(str(TMP["dir"]), PARAMS), CheckpointError,
     "directory"),
    ("save_missing_parent", lambda: checkpoint.save(str(TMP["dir"] / "no" / "c.safetensors"),
                                                    PARAMS), CheckpointError, "no"),
    ("save_path_int", lambda: checkpoint.save(3, PARAMS), ArgumentTypeError, "path"),
    ("save_object_leaf", lambda: checkpoint.save(str(TMP["dir"] / "o.safetensors"),
                                                 {"a": object()}), CheckpointError, "object"),
    ("save_metadata_not_json", lambda: checkpoint.save(str(TMP["dir"] / "m.safetensors"),
                                                       PARAMS, metadata={"f": object()}),
     CheckpointError, "metadata"),
    ("load_missing_file", lambda: checkpoint.load(str(TMP["dir"] / "none.safetensors")),
     CheckpointNotFoundError, "none.safetensors"),
    ("load_not_a_checkpoint", lambda: checkpoint.load(_text_file()), CorruptCheckpointError,
     "notes.txt"),
    ("load_like_other_keys", lambda: checkpoint.load(_saved(), like={"w": PARAMS["w"]}),
     CheckpointError, "b"),
    ("load_like_other_shape", lambda: checkpoint.load(_saved(), like={
        "w": jnp.ones((2, 3)), "b": jnp.zeros(2)}), CheckpointError, "w"),
    ("load_verify_str", lambda: checkpoint.load(_saved(), verify="yes"), ArgumentTypeError,
     "verify"),
    ("manager_mode", lambda: checkpoint.CheckpointManager(str(TMP["dir"]), mode="up"),
     ArgumentError, "mode"),
    ("manager_keep_last_zero", lambda: checkpoint.CheckpointManager(str(TMP["dir"]),
                                                                    keep_last=0),
     ArgumentError, "keep_last"),
    ("check_writable_file", lambda: checkpoint.check_writable(_text_file()), CheckpointError,
     "notes.txt"),
    # ---- distributed
    ("mesh_too_many_devices", lambda: distributed.make_mesh(10_000), ArgumentError, "devices"),
    ("mesh_empty", lambda: distributed.make_mesh([]), ArgumentError, "device"),
    ("plan_from_str", lambda: distributed.as_plan("data"), ArgumentTypeError, "Mesh"),
    ("plan_unknown_axis", lambda: distributed.as_plan(distributed.make_mesh(1),
                                                      batch_axis="model"), ArgumentError,
     "batch_axis|batch axis"),
    ("shard_batch_lengths_differ", lambda: distributed.shard_batch(
        (np.ones((4, 3)), np.ones(3)), distributed.data_parallel(1)), ArgumentError, "batch"),
    ("place_on_str", lambda: distributed.place(PARAMS, "mesh"), ArgumentTypeError, "Mesh"),
    # ---- training entry points (raised before any step runs: checked below)
    ("fit_epochs_negative", lambda: _fit(epochs=-1), ArgumentError, "epochs"),
    ("fit_batch_size_zero", lambda: _fit(batch_size=0), ArgumentError, "batch_size"),
    ("fit_unknown_optimizer", lambda: _fit(optimizer="adamm"), OptimizerError,
     "name_or_optimizer"),
    ("fit_lengths_differ", lambda: _fit(y=np.array([0, 1, 0])), DataError, "y"),
    ("fit_nan_in_x", lambda: _fit(x=np.full((4, 3), np.nan, np.float32)), DataError, "x"),
    ("fit_wrong_feature_count", lambda: _fit(x=np.ones((4, 5), np.float32)), LayerError,
     r"\(N, 3\)"),
    ("fit_labels_out_of_range", lambda: _fit(y=np.array([0, 1, 2, 5])), DataError, "label"),
    ("fit_validation_not_pair", lambda: _fit(validation_data=[np.ones((2, 3))]), ArgumentError,
     "validation_data"),
    ("fit_resume_without_dir", lambda: _fit(resume=True), ArgumentError, "checkpoint_dir"),
    ("predict_wrong_shape", lambda: jnet.predict(
        _classifier(), *_initialised(_classifier(), (3,)), np.ones((4, 5), np.float32)),
     LayerError, r"\(N, 3\)"),
    ("evaluate_lengths_differ", lambda: jnet.evaluate(
        _classifier(), *_initialised(_classifier(), (3,)), np.ones((4, 3), np.float32),
        np.array([0, 1])), DataError, "y"),
    ("train_step_no_loss", lambda: jnet.make_train_step(L.serial(L.Dense(2)), optim.sgd()),
     ArgumentError, "loss"),
]

TRAINING = {case[0] for case in CASES if case[0].startswith(("fit_", "predict_", "evaluate_"))}


def _param(case):
    case_id, thunk, cls, regex, *marks = case
    return pytest.param(case_id, thunk, cls, regex, id=case_id, marks=marks)


@pytest.fixture(autouse=True)
def tmp(tmp_path):
    TMP["dir"] = tmp_path
    STEPS["ran"] = 0
    yield tmp_path
    TMP.clear()


def test_enough_distinct_cases():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 80


@pytest.mark.parametrize(("case_id", "thunk", "cls", "regex"), [_param(c) for c in CASES])
def test_bad_input_is_a_clear_jnet_error(case_id, thunk, cls, regex):
    with pytest.raises(Error) as info:
        thunk()
    err = info.value
    assert isinstance(err, cls), f"{type(err).__name__}: {err}"
    # The built-in bases users catch are kept.
    if issubclass(cls, ArgumentTypeError):
        assert isinstance(err, TypeError)
    if issubclass(cls, (ArgumentError, DataError, LayerError)):
        assert isinstance(err, ValueError)
    assert re.search(regex, str(err)), str(err)
    if case_id in TRAINING:
        jax.effects_barrier()
        assert STEPS["ran"] == 0, "the error came after training work"


def test_the_probe_counts_steps():
    """The before-work check above can fail: a valid fit runs the probe."""
    _fit()
    jax.effects_barrier()
    assert STEPS["ran"] > 0


def _jnet_exception_classes():
    for info in pkgutil.walk_packages(jnet.__path__, "jnet."):
        if info.name.startswith("jnet.viz"):
            continue  # needs matplotlib; its errors are ArgumentError, see below
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("jnet"):
                yield cls


def test_every_jnet_error_class_is_a_jnet_error():
    classes = set(_jnet_exception_classes())
    assert {LayerError, OptimizerError, CheckpointError, jnet.TrainingDiverged} <= classes
    assert [c.__qualname__ for c in classes if not issubclass(c, Error)] == []
    assert issubclass(jnet.TrainingDiverged, FloatingPointError)
