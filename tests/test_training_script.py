"""scripts/train.py: the command-line trainer runs, checkpoints and resumes exactly."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # three short trainings: ~10 s on an idle 2-core machine, more when shared
def test_train_script_resumes_to_the_same_test_accuracy(tmp_path, capsys):
    train = _script()
    args = ["--model", "mlp", "--quiet", "--batch-size", "32", "--lr", "0.01"]
    straight = train.main([*args, "--epochs", "2"])
    train.main([*args, "--epochs", "1", "--checkpoint-dir", str(tmp_path)])
    resumed = train.main([*args, "--epochs", "2", "--checkpoint-dir", str(tmp_path), "--resume"])
    assert resumed == straight
    assert straight > 0.8  # two epochs of a small MLP already learn the digits
    out = capsys.readouterr().out
    assert "Total params" in out and "test accuracy" in out
