"""The notebooks run top to bottom in their reduced mode, and are committed without outputs."""

import json
import math
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("quickstart", "objectives_tour", "custom_data")


def _kernel_env(out: Path) -> dict[str, str]:
    """Reduced mode, writing under ``out``; one CPU device and the inline plot backend."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "host_platform_device_count" not in f)
    env.update(SSL_JAX_NOTEBOOK_SMOKE="1", SSL_JAX_NOTEBOOK_DIR=str(out))
    return env


def _execute(name: str, out: Path) -> nbformat.NotebookNode:
    """Runs the notebook in a kernel of this interpreter, cwd notebooks/; raises on any error."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",  # jupyter_client runs it with sys.executable
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=_kernel_env(out))
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")


def _num_images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def _eval_json(workdir: Path) -> dict:
    result = json.loads((workdir / "eval.json").read_text())
    for key in ("knn_top1", "linear_top1"):
        assert 0.0 <= result[key] <= 100.0, (key, result[key])
    return result


@pytest.mark.slow
def test_quickstart(tmp_path):
    nb = _execute("quickstart", tmp_path)
    result = _eval_json(tmp_path / "simclr")
    assert result["method"] == "simclr" and result["step"] == 8
    assert result["num_test_features"] == 256 and result["num_train_features"] == 512
    assert (tmp_path / "simclr" / "checkpoints" / "8").is_dir()
    text = _text(nb)
    assert f"kNN top-1: {result['knn_top1']:.2f}%" in text
    assert "features (256, " in text and "from the checkpoint of step 8" in text
    assert (tmp_path / "trajectory.png").stat().st_size > 0
    assert _num_images(nb) == 4  # curves, alignment-uniformity trajectory, t-SNE, neighbours


def test_objectives_tour(tmp_path):
    nb = _execute("objectives_tour", tmp_path)
    text = _text(nb)
    rows = [line for line in text.splitlines() if line.startswith(("contrastive", "clust"))]
    rows += [line for line in text.splitlines() if line.startswith(("asymm", "redund"))]
    assert len(rows) == 9, text
    for row in rows:  # three finite loss values per objective
        values = [float(v) for v in row.split()[-3:]]
        assert all(math.isfinite(v) for v in values), row
    for scenario in ("healthy", "complete collapse", "dimensional collapse"):
        assert f"{scenario:21s} std" in text
    assert "rotation: 32 rotated images" in text and "MAE: patches (8, 16, 192)" in text
    assert _num_images(nb) == 2  # the alignment-uniformity plane and the loss bars


@pytest.mark.slow
def test_custom_data(tmp_path):
    nb = _execute("custom_data", tmp_path)
    assert len(list((tmp_path / "my_images").glob("*/*/*.jpg"))) == 3 * (40 + 20)
    result = _eval_json(tmp_path / "byol")
    assert result["method"] == "byol" and result["step"] == 8
    assert result["num_train_features"] == 120 and result["num_test_features"] == 60
    text = _text(nb)
    assert "classes: ['cat', 'dog', 'horse']" in text
    assert f"kNN top-1: {result['knn_top1']:.2f}% on 60 test images" in text
    assert "8 images (8, 32, 32, 3) -> features (8, " in text
    assert "resized and centre cropped to (32, 32, 3)" in text
    assert _num_images(nb) == 2  # t-SNE and neighbours


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"code cell {i} of {name}.ipynb has outputs: strip them"
        assert cell.execution_count is None, f"code cell {i} of {name}.ipynb has a count"
