"""Every notebook in notebooks/ runs top to bottom (nbclient, the venv's python3 kernel)."""

import os
import pathlib
import sys
import time

import nbclient
import nbformat
import pytest
from jupyter_client.manager import KernelManager

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


class VenvKernelManager(KernelManager):
    """Starts the "python3" kernel with the interpreter running the tests (the venv's)."""

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if cmd and pathlib.Path(cmd[0]).name.startswith("python"):
            cmd[0] = sys.executable
        return cmd


# The language model notebook runs at its small default settings (seconds of training) in the
# default run; the tutorials train for real and form part of the exhaustive tier.
DEFAULT_RUN = {"language_model.ipynb"}


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.name, marks=() if p.name in DEFAULT_RUN else pytest.mark.slow)
    for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    # the kernel is a subprocess: let it import this checkout's jnet and draw without a display
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}},
    )
    # use the kernel of the interpreter running the tests (the venv), not a system one
    client.kernel_manager_class = VenvKernelManager
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    print(f"{path.name}: {seconds:.1f} s")

